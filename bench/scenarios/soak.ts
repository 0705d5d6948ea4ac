import { type BenchContext, seedWorkload, serverStats } from "../bench-context.js";
import { type LatencySummary, median, ratio, round, summarize } from "../latency-stats.js";
import type { MixResult, StreamsResult } from "../load-tasks.js";
import { runLoad, startLoad } from "../processes.js";
import { groupId, type Workload } from "../workload.js";

export interface SoakWindow {
  readonly startSeconds: number;
  readonly calls: number;
  readonly errors: number;
  readonly latency: LatencySummary;
  readonly byKind: Record<"send" | "get" | "list", LatencySummary>;
  readonly rssMiB: number;
  readonly heapMiB: number;
  /** Median of the window's samples. */
  readonly activeHandles: number;
  /** Worst of the window's samples (each the p99 since the previous sample). */
  readonly eventLoopDelayP99Ms: number;
}

/** How often the server's memory, handles and event-loop delay are sampled. */
const sampleEveryMs = 5_000;

export interface SoakResult {
  readonly durationSeconds: number;
  readonly windowSeconds: number;
  readonly rates: { readonly send: number; readonly get: number; readonly list: number };
  readonly watchers: number;
  readonly windows: SoakWindow[];
  readonly firstError?: string;
  /** Last window against the baseline (the windows of the first minute, or the first window). */
  readonly growth: { readonly rss: number; readonly activeHandles: number; readonly p999: number };
  readonly worstP999OverP99: number;
  readonly floor: { readonly target: string; readonly met: boolean };
}

/**
 * Mixed load at a steady rate (about a quarter of the peaks measured
 * earlier in the run) with watchers open: latency per window, and the
 * server's memory and handles over time.
 */
export async function soakScenario(
  context: BenchContext,
  peaks: { readonly sendCallsPerSecond: number; readonly getCallsPerSecond: number },
): Promise<SoakResult> {
  const quick = context.mode === "quick";
  const durationMs = quick ? 60_000 : 600_000;
  const windowMs = quick ? 6_000 : 30_000;
  const workers = 2;
  const w: Workload = {
    prefix: `${context.runId}k-`,
    groups: quick ? 50 : 100,
    members: quick ? 21 : 51,
    messagesPerGroup: quick ? 100 : 300,
    idsPerCall: 10,
    sentAt: Date.now() - 60_000,
  };
  await seedWorkload(context, w);
  const rates = {
    send: Math.max(5, Math.round(peaks.sendCallsPerSecond / 4)),
    get: Math.max(10, Math.round(peaks.getCallsPerSecond / 4)),
    list: 20,
  };
  const watchers = 200;
  const watch = startLoad<StreamsResult>({
    kind: "streams",
    address: context.service.address,
    method: "watch",
    streams: watchers,
    connections: 2,
    conversationIds: Array.from({ length: w.groups }, (_, g) => groupId(w, g)),
    record: false,
  });
  await watch.ready;
  context.log(`soak: ${durationMs / 1000} s at ${JSON.stringify(rates)} calls/s`);
  // Sampled several times per window: active handles include the timers and sockets of calls
  // in flight at that instant, so one sample per window reads noise as growth.
  const samples: { at: number; rss: number; heap: number; handles: number; lag: number }[] = [];
  await serverStats(context);
  const started = Date.now();
  const poll = setInterval(
    () => {
      serverStats(context).then(
        (s) =>
          samples.push({
            at: Date.now() - started,
            rss: s.rssBytes,
            heap: s.heapUsedBytes,
            handles: s.activeHandles,
            lag: s.eventLoopDelayP99Ms,
          }),
        () => undefined,
      );
    },
    Math.min(windowMs, sampleEveryMs),
  );
  const mixes = await Promise.all(
    Array.from({ length: workers }, (_, worker) =>
      runLoad<MixResult>({
        kind: "mix",
        address: context.service.address,
        workload: w,
        worker,
        workers,
        rates: { send: rates.send / workers, get: rates.get / workers, list: rates.list / workers },
        durationMs,
        windowMs,
      }),
    ),
  );
  clearInterval(poll);
  watch.collect();
  await watch.result;
  await watch.stop();

  const count = Math.ceil(durationMs / windowMs);
  const windows: SoakWindow[] = [];
  for (let i = 0; i < count; i++) {
    const parts = mixes.map((m) => m.windows[i]).filter((x) => x !== undefined);
    const kind = (k: "send" | "get" | "list") => parts.flatMap((p) => p.latenciesMs[k]);
    const all = [...kind("send"), ...kind("get"), ...kind("list")];
    const inWindow = samples.filter((x) => x.at > i * windowMs && x.at <= (i + 1) * windowMs);
    const sample = inWindow.at(-1) ?? samples.at(-1);
    windows.push({
      startSeconds: (i * windowMs) / 1000,
      calls: all.length,
      errors: parts.reduce((sum, p) => sum + p.errors, 0),
      latency: summarize(all),
      byKind: {
        send: summarize(kind("send")),
        get: summarize(kind("get")),
        list: summarize(kind("list")),
      },
      rssMiB: round((sample?.rss ?? 0) / 2 ** 20, 1),
      heapMiB: round((sample?.heap ?? 0) / 2 ** 20, 1),
      activeHandles: median(inWindow.map((x) => x.handles)) ?? sample?.handles ?? 0,
      eventLoopDelayP99Ms: round(Math.max(0, ...inWindow.map((x) => x.lag))),
    });
  }
  const baseline = windows.slice(0, Math.max(1, Math.floor(60_000 / windowMs)));
  const last = windows.at(-1) as SoakWindow;
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  const growth = {
    rss: ratio(last.rssMiB, mean(baseline.map((x) => x.rssMiB))),
    activeHandles: ratio(last.activeHandles, mean(baseline.map((x) => x.activeHandles))),
    p999: ratio(last.latency.p999Ms, mean(baseline.map((x) => x.latency.p999Ms))),
  };
  const worstP999OverP99 = Math.max(
    ...windows.map((x) => ratio(x.latency.p999Ms, x.latency.p99Ms)),
  );
  const firstError = mixes.find((m) => m.firstError)?.firstError;
  return {
    durationSeconds: durationMs / 1000,
    windowSeconds: windowMs / 1000,
    rates,
    watchers,
    windows,
    ...(firstError ? { firstError } : {}),
    growth,
    worstP999OverP99,
    floor: {
      target: "no growth (last window ≤ 1.2 × first minute for RSS and handles); p99.9 ≤ 2 × p99",
      met: growth.rss <= 1.2 && growth.activeHandles <= 1.2 && worstP999OverP99 <= 2,
    },
  };
}
