import { ratio } from "./latency-stats.js";
import { ceilingRows, type Row, renderCeilings } from "./report-ceilings.js";
import type { CeilingsResult } from "./scenarios/ceilings.js";
import type { FanOutResult } from "./scenarios/fan-out.js";
import type { GetPairedResult } from "./scenarios/get-paired.js";
import type { GetReceiptsResult } from "./scenarios/get-receipts.js";
import type { IdleStreamsResult } from "./scenarios/idle-streams.js";
import type { LargeGroupResult } from "./scenarios/large-group.js";
import type { SendReceiptsResult } from "./scenarios/send-receipts.js";
import type { SoakResult } from "./scenarios/soak.js";
import type { WebhooksResult } from "./scenarios/webhooks.js";

export interface BackendResults {
  send?: SendReceiptsResult;
  sendHot?: SendReceiptsResult;
  get?: GetReceiptsResult;
  getPaired?: GetPairedResult;
  fanOut?: FanOutResult;
  idleStreams?: IdleStreamsResult;
  largeGroup?: LargeGroupResult;
  soak?: SoakResult;
  webhooks?: WebhooksResult;
  failures: Record<string, string>;
}

export interface BenchResults {
  readonly date: string;
  readonly mode: string;
  readonly machine: Record<string, unknown>;
  readonly versions: Record<string, string>;
  readonly settings: Record<string, unknown>;
  readonly backends: Record<string, BackendResults>;
  /** The framework ceilings (a), (b), (c): measured once per run. */
  ceilings?: CeilingsResult;
}

const n = (value: number | undefined, digits = 2): string =>
  value === undefined || !Number.isFinite(value)
    ? "—"
    : value.toLocaleString("en-US", { maximumFractionDigits: digits });
/** CPU µs per receipt by process, e.g. "CPU µs/receipt: service 180, cassandra 175, machine 420". */
const cpuLine = (per: Readonly<Record<string, number>> | undefined): string =>
  per === undefined
    ? "CPU not measured"
    : `CPU µs/receipt: ${Object.entries(per)
        .map(([role, micros]) => `${role} ${n(micros, 0)}`)
        .join(", ")}`;
const met = (floor: { met: boolean } | undefined): string =>
  floor === undefined ? "—" : floor.met ? "met" : "**not met**";

/** The results table of one run, as Markdown. */
export function renderTable(results: BenchResults): string {
  const lines = [
    `Run of ${results.date} (${results.mode} mode). Machine: ${results.machine.nproc} CPUs (${results.machine.cpuModel}), ${results.machine.memoryGiB} GiB, Linux ${results.machine.kernel}.`,
    "",
    `Versions: ${Object.entries(results.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}.`,
    "",
    `Settings: ${Object.entries(results.settings)
      .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join(", ")}.`,
    "",
    ...(results.ceilings ? [...renderCeilings(results.ceilings), ""] : []),
    "| store | scenario | figure | ceiling (same run) | ratio | floor | |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const [backend, r] of Object.entries(results.backends)) {
    const row: Row = (scenario, figure, ceiling, ratio, floor, ok) =>
      lines.push(
        `| ${backend} | ${scenario} | ${figure} | ${ceiling} | ${ratio} | ${floor} | ${ok} |`,
      );
    for (const [scenario, s] of [
      ["SendReceipts", r.send],
      ["SendReceipts, hot messages (16 readers of each at once)", r.sendHot],
    ] as const) {
      if (s === undefined) continue;
      row(
        scenario,
        `${n(s.receiptsPerSecond, 0)} receipts/s (${s.callsInFlight} calls × ${s.workload.idsPerCall} ids in flight; call p99 ${n(s.callLatency.p99Ms)} ms; ${s.errors} errors); ${cpuLine(s.cpuPerReceipt.service)}`,
        `${n(s.ceiling.receiptsPerSecond, 0)} receipts/s; ${cpuLine(s.cpuPerReceipt.ceiling)}`,
        `${n(s.ratio)}×`,
        s.floor.target,
        met(s.floor),
      );
    }
    if (r.get) {
      const g = r.get;
      row(
        "GetReceipts, hot, at half of peak",
        `p50 ${n(g.halfPeak.getReceipts.latency.p50Ms)} / p99 ${n(g.halfPeak.getReceipts.latency.p99Ms)} ms at ${n(g.halfPeak.getReceipts.callsPerSecond, 0)} calls/s (peak ${n(g.peak.getReceipts.callsPerSecond, 0)})`,
        `empty RPC p50 ${n(g.halfPeak.emptyRpc.latency.p50Ms)} / p99 ${n(g.halfPeak.emptyRpc.latency.p99Ms)} ms (peak ${n(g.peak.emptyRpc.callsPerSecond, 0)}); ioredis p99 ${n(g.halfPeak.redisRead.latency.p99Ms)} ms`,
        `p50 ${n(g.ratios.p50VsEmpty)}×, p99 ${n(g.ratios.p99VsEmpty)}× empty; p99 ${n(g.ratios.p99VsRedis)}× redis; peak ${n(g.ratios.peakVsEmpty)}×`,
        g.floor.target,
        met(g.floor),
      );
      const c = g.connectHttp1;
      row(
        "GetReceipts, hot, Connect over HTTP/1.1, at half of peak",
        `p50 ${n(c.halfPeak.getReceipts.latency.p50Ms)} / p99 ${n(c.halfPeak.getReceipts.latency.p99Ms)} ms at ${n(c.halfPeak.getReceipts.callsPerSecond, 0)} calls/s (peak ${n(c.peak.getReceipts.callsPerSecond, 0)}; ${c.connections} connections)`,
        `empty RPC p50 ${n(c.halfPeak.emptyRpc.latency.p50Ms)} / p99 ${n(c.halfPeak.emptyRpc.latency.p99Ms)} ms (peak ${n(c.peak.emptyRpc.callsPerSecond, 0)})`,
        `p99 ${n(c.p99VsEmpty)}× empty; peak ${n(ratio(c.peak.getReceipts.callsPerSecond, c.peak.emptyRpc.callsPerSecond))}×`,
        c.floor.target,
        met(c.floor),
      );
    }
    if (r.fanOut) {
      const f = r.fanOut;
      row(
        `Fan-out to ${n(f.watchers, 0)} watchers`,
        `p50 ${n(f.latency.p50Ms)} / p99 ${n(f.latency.p99Ms)} ms (${n(f.delivered, 0)} of ${n(f.expected, 0)} delivered)`,
        `empty stream p50 ${n(f.ceiling.latency.p50Ms)} / p99 ${n(f.ceiling.latency.p99Ms)} ms`,
        `p50 ${n(f.ratios.p50)}×, p99 ${n(f.ratios.p99)}×`,
        f.floor.target,
        met(f.floor),
      );
    }
    if (r.idleStreams) {
      const i = r.idleStreams;
      row(
        "Idle WatchReceipts streams",
        `${n(i.opened, 0)} open over ${i.connections} connections (${n(i.failed, 0)} refused); ${n(i.bytesPerStream.rss, 0)} B RSS, ${n(i.bytesPerStream.heap, 0)} B heap per stream; loop delay p99 ${n(i.eventLoopDelayMs.idle.p99)} ms idle, ${n(i.eventLoopDelayMs.pushing.p99)} ms pushing ${i.pushed.perSecond} updates/s`,
        "—",
        "—",
        i.floor.target,
        met(i.floor),
      );
    }
    if (r.largeGroup) {
      const l = r.largeGroup;
      row(
        "Group of 100,000",
        `TrackMessages p50 ${n(l.trackMessages.large.p50Ms)} / p99 ${n(l.trackMessages.large.p99Ms)} ms; ListReadMembers (group of ${n(l.listReadMembers.groupMembers, 0)}: larger ones ${l.listReadMembers.largeGroupAnswer === "served" ? "served" : "refused by policy"}) page of ${l.listReadMembers.pageSize} p99 ${n(l.listReadMembers.unread.p99Ms)} ms UNREAD, ${n(l.listReadMembers.read.p99Ms)} ms READ`,
        `10-member group: TrackMessages p50 ${n(l.trackMessages.small.p50Ms)} / p99 ${n(l.trackMessages.small.p99Ms)} ms`,
        `p50 ${n(l.trackMessages.p50Ratio)}×, p99 ${n(l.trackMessages.p99Ratio)}×`,
        l.floor.target,
        met(l.floor),
      );
    }
    if (r.soak) {
      const s = r.soak;
      const first = s.windows[0];
      const last = s.windows.at(-1);
      row(
        `Soak, ${n(s.durationSeconds / 60, 1)} min mixed`,
        `last window: p99 ${n(last?.latency.p99Ms)} / p99.9 ${n(last?.latency.p999Ms)} ms, RSS ${n(last?.rssMiB, 0)} MiB, ${last?.activeHandles} handles; worst p99.9/p99 ${n(s.worstP999OverP99)}`,
        `first window: p99 ${n(first?.latency.p99Ms)} / p99.9 ${n(first?.latency.p999Ms)} ms, RSS ${n(first?.rssMiB, 0)} MiB, ${first?.activeHandles} handles`,
        `RSS ${n(s.growth.rss)}×, handles ${n(s.growth.activeHandles)}×, p99.9 ${n(s.growth.p999)}×`,
        s.floor.target,
        met(s.floor),
      );
    }
    if (r.webhooks) webhookRows(r.webhooks, row);
    ceilingRows(results.ceilings, r, row);
    for (const [scenario, error] of Object.entries(r.failures)) {
      row(scenario, `failed: ${error.split("\n")[0]}`, "—", "—", "—", "**not run**");
    }
  }
  return lines.join("\n");
}

function webhookRows(w: WebhooksResult, row: Row): void {
  const l = w.lag;
  row(
    `Webhooks: delivery lag at ${n(l.offeredReceiptsPerSecond, 0)} receipts/s (${w.tenants} tenants, one endpoint each)`,
    `p50 ${n(l.fromAcknowledgement.p50Ms)} / p99 ${n(l.fromAcknowledgement.p99Ms)} / max ${n(l.fromAcknowledgement.maxMs)} ms from the acknowledgement; ${n(l.delivered, 0)} of ${n(l.acknowledged, 0)} acknowledged delivered, ${n(l.duplicates, 0)} twice or more, ${n(l.missing, 0)} missing (${n(l.acknowledgedPerSecond, 0)} acknowledged/s; call p99 ${n(l.callLatency.p99Ms)} ms; ${l.callErrors} errors; ${n(l.posts, 0)} POSTs, ${l.refusedPosts} refused)${l.saturated ? `; **the service was saturated** (closed-loop capacity in this run ${n(w.throughput.withoutWebhooks, 0)} receipts/s)` : ""}`,
    "—",
    "—",
    w.floors.lag.target,
    met(w.floors.lag),
  );
  const t = w.throughput;
  row(
    "Webhooks: SendReceipts with one endpoint per tenant",
    `${n(t.withWebhooks, 0)} receipts/s (${t.callsInFlight} calls × ${t.workload.idsPerCall} ids in flight; ${t.errors} errors); delivered ${n(t.delivery.delivered, 0)} of ${n(t.delivery.acknowledged, 0)} acknowledged (${n(t.delivery.duplicates, 0)} twice), ${n(t.delivery.posts, 0)} POSTs, caught up ${n(t.delivery.caughtUpAfterMs / 1000, 1)} s after the load`,
    `${n(t.withoutWebhooks, 0)} receipts/s without webhooks (rounds: ${t.rounds.map((r) => `${r.webhooks ? "with" : "without"} ${n(r.receiptsPerSecond, 0)}, ${cpuLine(r.cpuPerReceipt)}`).join("; ")})`,
    `${n(t.ratio)}× (service CPU per receipt: ${n(t.cpuRatio)}×)`,
    w.floors.throughput.target,
    met(w.floors.throughput),
  );
  const c = w.deliveryCost;
  if (c === undefined) return; // results of runs before it was measured
  row(
    "Webhooks: the service's CPU per delivered event, measured apart",
    `${n(c.deliveryUsPerEvent, 1)} µs per event (median of paired rounds; CPU µs per event logging only: ${c.logOnly.map((us) => n(us, 1)).join(", ")}; logging and delivering: ${c.logAndDeliver.map((us) => n(us, 1)).join(", ")}; ${n(c.events, 0)} events a round)`,
    "service CPU per receipt without webhooks (rounds above)",
    `${n(c.cpuBoundRatio)}× if CPU-bound`,
    "—",
    "",
  );
}
