import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { addMembers, type BenchContext, sleep, trackMessages } from "../bench-context.js";
import { BenchService } from "../gen/bench/v1/bench_pb.js";
import { type LatencySummary, nowMs, ratio, summarize } from "../latency-stats.js";
import type { StreamsResult } from "../load-tasks.js";
import { type LoadProcess, startLoad, startServer } from "../processes.js";

export interface FanOutResult {
  readonly watchers: number;
  readonly events: number;
  readonly delivered: number;
  readonly expected: number;
  readonly latency: LatencySummary;
  readonly ceiling: {
    readonly what: string;
    readonly delivered: number;
    readonly latency: LatencySummary;
  };
  /** The same empty-stream fan-out on ceiling (a), bare connect-node. */
  readonly ceilingConnect: {
    readonly what: string;
    readonly delivered: number;
    readonly latency: LatencySummary;
  };
  readonly ratios: { readonly p50: number; readonly p99: number };
  readonly floor: { readonly target: string; readonly met: boolean };
}

const watchers = 1_000;
const loadProcesses = 2;

/** Opens `watchers` streams from the load processes and waits until each has its first message. */
async function openWatchers(
  address: string,
  method: "watch" | "subscribe",
  conversationId: string,
): Promise<LoadProcess<StreamsResult>[]> {
  const loads = Array.from({ length: loadProcesses }, () =>
    startLoad<StreamsResult>({
      kind: "streams",
      address,
      method,
      streams: watchers / loadProcesses,
      connections: 4,
      conversationIds: [conversationId],
      record: true,
    }),
  );
  const ready = (await Promise.all(loads.map((l) => l.ready))) as {
    opened: number;
    firstError?: string;
  }[];
  const opened = ready.reduce((sum, r) => sum + r.opened, 0);
  if (opened !== watchers)
    throw new Error(`fan-out: ${opened} of ${watchers} streams opened: ${ready[0]?.firstError}`);
  return loads;
}

/** Every watcher's delay from the moment its event was sent, and how many arrived. */
async function collect(
  loads: LoadProcess<StreamsResult>[],
  sentAt: ReadonlyMap<string, number>,
): Promise<{ delays: number[]; delivered: number }> {
  for (const load of loads) load.collect();
  const results = await Promise.all(loads.map((l) => l.result));
  await Promise.all(loads.map((l) => l.stop()));
  const delays: number[] = [];
  for (const result of results) {
    for (const [key, times] of Object.entries(result.arrivals)) {
      const at = sentAt.get(key);
      if (at !== undefined) for (const time of times) delays.push(time - at);
    }
  }
  return { delays, delivered: delays.length };
}

/**
 * One receipt to 1,000 watchers of its conversation: from the moment the
 * reader's SendReceipts is sent to each watcher's delivery. The ceiling: the
 * same number of empty server streams, one empty message each, sent by a
 * unary call to the same server.
 */
export async function fanOutScenario(context: BenchContext): Promise<FanOutResult> {
  const events = context.mode === "quick" ? 20 : 100;
  const group = `${context.runId}fan`;
  const sentAtMs = Date.now() - 60_000;
  await addMembers(context, group, ["sender", "reader"], sentAtMs - 3_600_000);
  const ids = Array.from({ length: events }, (_, i) => `${group}-m${i}`);
  await trackMessages(
    context,
    ids.map((messageId) => ({
      conversationId: group,
      messageId,
      senderId: "sender",
      sentAt: sentAtMs,
    })),
  );

  context.log(`fan-out: ${watchers} WatchReceipts streams, ${events} receipts`);
  const watch = await openWatchers(context.service.address, "watch", group);
  await sleep(500);
  const sent = new Map<string, number>();
  for (const id of ids) {
    sent.set(`receipt:${id}`, nowMs());
    await context.receipts.sendReceipts({
      conversationId: group,
      readerId: "reader",
      messageIds: [id],
    });
    await sleep(250);
  }
  await sleep(1_000);
  const api = await collect(watch, sent);

  context.log(`fan-out ceiling: ${watchers} empty streams`);
  const empty = await emptyStreamFanOut(context.service.address, context.bench, events);
  context.log(`fan-out ceiling (a): ${watchers} empty streams on bare connect-node`);
  const bare = await startServer("ceiling-server.js", ["--expose-gc"], { CEILING_KIND: "connect" });
  let bareFanOut: Awaited<ReturnType<typeof emptyStreamFanOut>>;
  try {
    const bench = createClient(
      BenchService,
      createGrpcTransport({ baseUrl: `http://${bare.address}` }),
    );
    bareFanOut = await emptyStreamFanOut(bare.address, bench, events);
  } finally {
    await bare.stop();
  }

  const latency = summarize(api.delays);
  const ceilingLatency = summarize(empty.delays);
  return {
    watchers,
    events,
    delivered: api.delivered,
    expected: watchers * events,
    latency,
    ceiling: {
      what: "bench.v1.BenchService/Subscribe × 1,000, one message each per Broadcast call",
      delivered: empty.delivered,
      latency: ceilingLatency,
    },
    ceilingConnect: {
      what: "the same empty streams on ceiling (a), bare connect-node without interceptors",
      delivered: bareFanOut.delivered,
      latency: summarize(bareFanOut.delays),
    },
    ratios: {
      p50: ratio(latency.p50Ms, ceilingLatency.p50Ms),
      p99: ratio(latency.p99Ms, ceilingLatency.p99Ms),
    },
    floor: {
      target: "p99 ≤ 50 ms",
      met: latency.p99Ms <= 50 && api.delivered === watchers * events,
    },
  };
}

/** `watchers` empty streams on `address`, one Broadcast every 250 ms: each stream's delays. */
async function emptyStreamFanOut(
  address: string,
  bench: Pick<BenchContext["bench"], "broadcast">,
  events: number,
): Promise<{ delays: number[]; delivered: number }> {
  const subscribe = await openWatchers(address, "subscribe", "");
  await sleep(500);
  const ticks = new Map<string, number>();
  for (let i = 1; i <= events; i++) {
    ticks.set(String(i), nowMs());
    await bench.broadcast({ sequence: BigInt(i) });
    await sleep(250);
  }
  await sleep(1_000);
  return collect(subscribe, ticks);
}
