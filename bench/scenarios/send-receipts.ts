import { join } from "node:path";
import { type BenchContext, seedWorkload } from "../bench-context.js";
import { type LatencySummary, ratio, round, summarize } from "../latency-stats.js";
import type { ThroughputResult } from "../load-tasks.js";
import { findStorePids, perUnit, startCpuMeter } from "../process-cpu.js";
import { runLoad, serverCpu } from "../processes.js";
import type { Workload } from "../workload.js";

export interface SendReceiptsResult {
  readonly workload: Workload;
  readonly loadProcesses: number;
  readonly callsInFlight: number;
  readonly receiptsPerSecond: number;
  readonly callLatency: LatencySummary;
  readonly errors: number;
  readonly firstError?: string;
  readonly ceiling: {
    readonly what: string;
    readonly receiptsPerSecond: number;
    readonly receiptsInFlight: number;
  };
  readonly ratio: number;
  /**
   * CPU microseconds per acknowledged receipt, by process (service, cassandra, redis when
   * local) and for the whole machine (load processes included, their start-up too), through
   * the service and in the ceiling's loop.
   */
  readonly cpuPerReceipt: {
    readonly service: Readonly<Record<string, number>>;
    readonly ceiling: Readonly<Record<string, number>>;
  };
  readonly floor: { readonly target: string; readonly met: boolean };
}

/**
 * SendReceipts from several load processes, each reader acknowledging
 * `idsPerCall` messages per call, every (reader, message) pair new; against a
 * bare insert loop of the same rows on the same store.
 */
export async function sendReceiptsScenario(
  context: BenchContext,
  shape: "spread" | "hot" = "spread",
): Promise<SendReceiptsResult> {
  const quick = context.mode === "quick";
  // Spread: the calls in flight belong to different groups. Hot: two groups, so each load
  // process's 16 calls in flight are 16 readers of the same 10 messages at once (a group
  // reading its newest messages), the case that per-partition coalescing is for.
  const workload: Workload =
    shape === "spread"
      ? {
          prefix: `${context.runId}s-`,
          groups: quick ? 50 : 100,
          members: quick ? 21 : 51,
          messagesPerGroup: quick ? 100 : 200,
          idsPerCall: 10,
          sentAt: Date.now() - 60_000,
        }
      : {
          // Not `h-`: GetReceipts's hot messages have that prefix.
          prefix: `${context.runId}sh-`,
          groups: 2,
          members: quick ? 161 : 321,
          messagesPerGroup: quick ? 300 : 400,
          idsPerCall: 10,
          sentAt: Date.now() - 60_000,
        };
  const durationMs = quick ? 10_000 : 30_000;
  const workers = 2;
  const concurrency = 16;
  context.log(`send: seeding ${workload.groups} groups`);
  await seedWorkload(context, workload);

  // Cassandra and Redis are on the path of the Cassandra store only; SQLite lives in the service.
  const stores = context.backend === "cassandra" ? findStorePids() : {};
  context.log("send: SendReceipts through the service");
  const serviceCpu = startCpuMeter({ service: context.service.pid, ...stores });
  const results = await Promise.all(
    Array.from({ length: workers }, (_, worker) =>
      runLoad<ThroughputResult>({
        kind: "send",
        address: context.service.address,
        workload,
        worker,
        workers,
        concurrency,
        connections: 2,
        durationMs,
      }),
    ),
  );
  const receipts = results.reduce((sum, r) => sum + r.receipts, 0);
  const cpuThroughService = perUnit(serviceCpu(), receipts);
  const elapsed = Math.max(...results.map((r) => r.elapsedMs));
  const receiptsPerSecond = round((receipts * 1000) / elapsed, 1);
  const callsInFlight = workers * concurrency;
  const receiptsInFlight = callsInFlight * workload.idsPerCall;

  // The ceiling runs where the service runs (its CPU), with fresh rows of the same shape.
  const ceilingWorkload = { ...workload, prefix: `${workload.prefix}c-` };
  let ceiling: SendReceiptsResult["ceiling"];
  let ceilingReceipts: number;
  // The ceilings use no Redis.
  const ceilingCpu = startCpuMeter(
    stores.cassandra === undefined ? {} : { cassandra: stores.cassandra },
  );
  if (context.backend === "embedded") {
    context.log("send: ceiling, a bare node:sqlite insert loop");
    const bare = await runLoad<ThroughputResult>(
      {
        kind: "sqlite-ceiling",
        path: join(context.scratchDir, `ceiling-${workload.prefix}.db`),
        workload: ceilingWorkload,
        durationMs,
      },
      serverCpu,
    );
    ceilingReceipts = bare.receipts;
    ceiling = {
      what: "bare node:sqlite loop: the same receipts rows and read_count updates, one transaction per call of 10, WAL + synchronous=FULL, one writer (SQLite has one)",
      receiptsPerSecond: round((bare.receipts * 1000) / bare.elapsedMs, 1),
      receiptsInFlight: workload.idsPerCall,
    };
  } else {
    context.log("send: ceiling, a bare cassandra-driver insert loop");
    const bare = await runLoad<ThroughputResult>(
      {
        kind: "cassandra-ceiling",
        ...context.cassandra,
        workload: ceilingWorkload,
        concurrency: receiptsInFlight,
        durationMs,
      },
      serverCpu,
    );
    ceilingReceipts = bare.receipts;
    ceiling = {
      what: `bare cassandra-driver loop: readers_by_message + receipts_by_reader rows per receipt, prepared, ${context.cassandra.consistency}, ${receiptsInFlight} receipts in flight (the service's ${callsInFlight} calls × ${workload.idsPerCall})`,
      receiptsPerSecond: round((bare.receipts * 1000) / bare.elapsedMs, 1),
      receiptsInFlight,
    };
  }
  const cpuInCeiling = perUnit(ceilingCpu(), ceilingReceipts);
  const r = ratio(receiptsPerSecond, ceiling.receiptsPerSecond);
  const errors = results.reduce((sum, x) => sum + x.errors, 0);
  const firstError = results.find((x) => x.firstError)?.firstError;
  return {
    workload,
    loadProcesses: workers,
    callsInFlight,
    receiptsPerSecond,
    callLatency: summarize(results.flatMap((x) => x.latenciesMs)),
    errors,
    ...(firstError ? { firstError } : {}),
    ceiling,
    ratio: r,
    cpuPerReceipt: { service: cpuThroughService, ceiling: cpuInCeiling },
    floor: { target: "≥ 0.7 × ceiling", met: r >= 0.7 },
  };
}
