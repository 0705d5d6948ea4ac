import { ratio } from "./latency-stats.js";
import type { CeilingServerResult, CeilingsResult } from "./scenarios/ceilings.js";
import type { FanOutResult } from "./scenarios/fan-out.js";
import type { GetPairedResult } from "./scenarios/get-paired.js";
import type { GetReceiptsResult } from "./scenarios/get-receipts.js";
import type { IdleStreamsResult } from "./scenarios/idle-streams.js";
import type { SendReceiptsResult } from "./scenarios/send-receipts.js";

const n = (value: number | undefined, digits = 2): string =>
  value === undefined || !Number.isFinite(value)
    ? "—"
    : value.toLocaleString("en-US", { maximumFractionDigits: digits });
const verdict = (met: boolean) => (met ? "met" : "**not met**");
const names: Record<string, string> = {
  connect: "(a) bare connect-node",
  "grpc-js": "(b) bare @grpc/grpc-js",
  raw: "(c) raw node:http2",
};

/** The framework ceilings of one run: each server against (a), and (a) against (c). */
export function renderCeilings(c: CeilingsResult): string[] {
  const a = c.servers.connect;
  const raw = c.servers.raw;
  const lines = [
    `Framework ceilings, canned answers of the service's own sizes (GetReceipts ${c.answerBytes.get} B, SendReceipts ${c.answerBytes.send} B, first WatchReceipts message ${c.answerBytes.watch} B), each server pinned to the server's CPU, the same clients:`,
    "",
    "| server | GetReceipts gRPC, 8×8 (calls/s, p99) | GetReceipts Connect/HTTP 1.1, 32 connections | SendReceipts, 2×16 in flight (receipts/s, p99) | idle stream, RSS per stream | vs (a) |",
    "|---|---|---|---|---|---|",
  ];
  for (const [kind, s] of Object.entries(c.servers) as [string, CeilingServerResult][]) {
    const against =
      kind === "connect"
        ? raw === undefined
          ? "—"
          : `(a) vs (c): GetReceipts ${n(ratio(s.get.callsPerSecond, raw.get.callsPerSecond))}×, SendReceipts ${n(ratio(s.send.receiptsPerSecond, raw.send.receiptsPerSecond))}×, stream memory ${n(ratio(s.idle.rssBytesPerStream, raw.idle.rssBytesPerStream))}×`
        : a === undefined
          ? "—"
          : `GetReceipts ${n(ratio(s.get.callsPerSecond, a.get.callsPerSecond))}×, SendReceipts ${n(ratio(s.send.receiptsPerSecond, a.send.receiptsPerSecond))}×, stream memory ${n(ratio(s.idle.rssBytesPerStream, a.idle.rssBytesPerStream))}×`;
    const h1 = s.getConnectHttp1;
    lines.push(
      `| ${names[kind] ?? kind} | ${n(s.get.callsPerSecond, 0)}, p99 ${n(s.get.latency.p99Ms)} ms, CPU ${n(s.get.serverCpuMicrosPerCall, 0)} µs/call | ${h1 === undefined ? "—" : `${n(h1.callsPerSecond, 0)}, p99 ${n(h1.latency.p99Ms)} ms`} | ${n(s.send.receiptsPerSecond, 0)}, p99 ${n(s.send.latency.p99Ms)} ms | ${n(s.idle.rssBytesPerStream, 0)} B (${n(s.idle.opened, 0)} open) | ${against} |`,
    );
  }
  return lines;
}

/** Adds one row to the results table. */
export type Row = (
  scenario: string,
  figure: string,
  ceiling: string,
  ratio: string,
  floor: string,
  ok: string,
) => unknown;

/** The issue-18 floors, each scenario against ceiling (a) of the same run. */
export function ceilingRows(
  c: CeilingsResult | undefined,
  r: {
    readonly get?: GetReceiptsResult;
    readonly getPaired?: GetPairedResult;
    readonly send?: SendReceiptsResult;
    readonly idleStreams?: IdleStreamsResult;
    readonly fanOut?: FanOutResult;
  },
  row: Row,
): void {
  if (r.fanOut?.ceilingConnect !== undefined) {
    const ours = r.fanOut.latency.p99Ms;
    const bare = r.fanOut.ceilingConnect.latency.p99Ms;
    const x = ratio(ours, bare);
    row(
      `Fan-out to ${n(r.fanOut.watchers, 0)} watchers vs (a)`,
      `p99 ${n(ours)} ms (${n(r.fanOut.delivered, 0)} of ${n(r.fanOut.expected, 0)} delivered)`,
      `(a) empty streams p99 ${n(bare)} ms (${n(r.fanOut.ceilingConnect.delivered, 0)} delivered)`,
      `${n(x)}×`,
      "p99 ≤ 1.2× (a)",
      verdict(x <= 1.2),
    );
  }
  if (r.getPaired) pairedRows(r.getPaired, row);
  const a = c?.servers.connect;
  if (a === undefined) return;
  if (r.get) {
    for (const [label, ours, theirs] of [
      ["gRPC, 8×8", r.get.peak.getReceipts, a.get],
      ["Connect/HTTP 1.1, 32 connections", r.get.connectHttp1.peak.getReceipts, a.getConnectHttp1],
    ] as const) {
      if (theirs === undefined) continue;
      const throughput = ratio(ours.callsPerSecond, theirs.callsPerSecond);
      const p99 = ratio(ours.latency.p99Ms, theirs.latency.p99Ms);
      row(
        `GetReceipts, hot, peak vs (a), ${label}`,
        `${n(ours.callsPerSecond, 0)} calls/s, p99 ${n(ours.latency.p99Ms)} ms; server CPU ${n(ours.serverCpuMicrosPerCall, 0)} µs/call`,
        `(a) ${n(theirs.callsPerSecond, 0)} calls/s, p99 ${n(theirs.latency.p99Ms)} ms; CPU ${n(theirs.serverCpuMicrosPerCall, 0)} µs/call`,
        `calls/s ${n(throughput)}×, p99 ${n(p99)}×`,
        "≥ 0.8× (a) calls/s, p99 ≤ 1.5× (a)",
        verdict(throughput >= 0.8 && p99 <= 1.5),
      );
    }
  }
  if (r.get) {
    const half = r.get.halfPeak;
    const get = half.getReceipts.serverCpuMicrosPerCall;
    const empty = half.emptyRpc.serverCpuMicrosPerCall;
    if (get !== undefined && empty !== undefined) {
      row(
        "GetReceipts, hot, server CPU per call at half of peak (gRPC)",
        `${n(get, 0)} µs/call; the service's own (minus the empty RPC) ${n(get - empty, 0)} µs`,
        `empty RPC ${n(empty, 0)} µs/call; (a) at its peak ${n(a.get.serverCpuMicrosPerCall, 0)} µs/call`,
        `${n(ratio(get, a.get.serverCpuMicrosPerCall ?? Number.NaN))}× (a)`,
        "—",
        "—",
      );
    }
  }
  if (r.send) {
    const store = r.send.ceiling.receiptsPerSecond;
    const serial = 1 / (1 / a.send.receiptsPerSecond + 1 / store);
    const x = ratio(r.send.receiptsPerSecond, serial);
    row(
      "SendReceipts vs (a) and the store in series",
      `${n(r.send.receiptsPerSecond, 0)} receipts/s`,
      `1 / (1/${n(a.send.receiptsPerSecond, 0)} + 1/${n(store, 0)}) = ${n(serial, 0)} receipts/s`,
      `${n(x)}×`,
      "≥ 0.7× the serial combination",
      verdict(x >= 0.7),
    );
  }
  if (r.idleStreams) {
    const ours = r.idleStreams.bytesPerStream.rss;
    const raw = c?.servers.raw?.idle.rssBytesPerStream;
    row(
      "Idle WatchReceipts streams, memory vs (a)",
      `${n(ours, 0)} B RSS per stream (${n(r.idleStreams.opened, 0)} open)`,
      `(a) ${n(a.idle.rssBytesPerStream, 0)} B; (c) ${n(raw, 0)} B`,
      `${n(ratio(ours, a.idle.rssBytesPerStream))}× (a); ours ${n(ours - a.idle.rssBytesPerStream, 0)} B over (a)`,
      "≤ 25,000 B per stream",
      verdict(ours <= 25_000),
    );
  }
}

/** GetReceipts against (a) in rounds, each round both servers back to back. */
function pairedRows(paired: GetPairedResult, row: Row): void {
  for (const [label, rounds] of [
    ["gRPC, 8×8", paired.grpc],
    ["Connect/HTTP 1.1, 32 connections", paired.connectHttp1],
  ] as const) {
    const each = rounds.rounds
      .map(
        (r) =>
          `${n(r.ours.callsPerSecond, 0)} vs ${n(r.bare.callsPerSecond, 0)} (${n(ratio(r.ours.callsPerSecond, r.bare.callsPerSecond))}×)`,
      )
      .join("; ");
    row(
      `GetReceipts, hot, peak vs (a) in paired rounds, ${label}`,
      `calls/s, ours vs (a), by round: ${each}`,
      "(a) in the same round, just before or after",
      `median of the rounds: calls/s ${n(rounds.callsPerSecondRatio)}×, p99 ${n(rounds.p99Ratio)}×`,
      "≥ 0.8× (a) calls/s, p99 ≤ 1.5× (a)",
      verdict(rounds.callsPerSecondRatio >= 0.8 && rounds.p99Ratio <= 1.5),
    );
  }
}
