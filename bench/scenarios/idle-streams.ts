import {
  addMembers,
  type BenchContext,
  serverStats,
  sleep,
  trackMessages,
} from "../bench-context.js";
import { round } from "../latency-stats.js";
import type { StreamsResult } from "../load-tasks.js";
import { startLoad } from "../processes.js";

export interface IdleStreamsResult {
  readonly target: number;
  readonly opened: number;
  /** Streams the server itself counts open (its metrics gauge). */
  readonly serverOpenStreams: number;
  readonly failed: number;
  readonly firstError?: string;
  readonly connections: number;
  readonly openSeconds: number;
  readonly bytesPerStream: { readonly rss: number; readonly heap: number };
  readonly serverRssMiB: number;
  readonly eventLoopDelayMs: {
    readonly idle: { readonly p50: number; readonly p99: number; readonly max: number };
    readonly pushing: { readonly p50: number; readonly p99: number; readonly max: number };
  };
  readonly pushed: {
    readonly updates: number;
    readonly perSecond: number;
    readonly expectedDeliveries: number;
    readonly delivered: number;
  };
  readonly floor: { readonly target: string; readonly met: boolean };
}

const conversations = 100;

/**
 * Idle WatchReceipts streams on one instance, opened over a few HTTP/2
 * connections from several load processes: memory per stream, and the
 * server's event-loop delay at rest and while receipts are pushed to them.
 */
export async function idleStreamsScenario(context: BenchContext): Promise<IdleStreamsResult> {
  // Quick mode opens fewer, to finish in minutes; the full run aims at the floor.
  const target = context.mode === "quick" ? 20_000 : 50_000;
  const loadProcesses = 4;
  const connectionsPerProcess = 12;
  const pushSeconds = context.mode === "quick" ? 10 : 30;
  const perSecond = 20;
  const updates = pushSeconds * perSecond;
  const group = (i: number) => `${context.runId}idle${i}`;
  const sentAt = Date.now() - 60_000;
  for (let i = 0; i < conversations; i++) {
    await addMembers(context, group(i), ["sender", "reader"], sentAt - 3_600_000);
  }
  await trackMessages(
    context,
    Array.from({ length: updates }, (_, u) => ({
      conversationId: group(u % conversations),
      messageId: `${group(u % conversations)}-m${u}`,
      senderId: "sender",
      sentAt,
    })),
  );

  const before = await serverStats(context, true);
  context.log(`idle streams: opening ${target}`);
  const loads = Array.from({ length: loadProcesses }, () =>
    startLoad<StreamsResult>({
      kind: "streams",
      address: context.service.address,
      method: "watch",
      streams: target / loadProcesses,
      connections: connectionsPerProcess,
      conversationIds: Array.from({ length: conversations }, (_, i) => group(i)),
      record: false,
    }),
  );
  // The load processes hold tens of thousands of streams: stopped whatever happens below.
  try {
    return await measure();
  } finally {
    await Promise.allSettled(loads.map((l) => l.stop()));
  }

  async function measure(): Promise<IdleStreamsResult> {
    const ready = (await Promise.all(loads.map((l) => l.ready))) as {
      opened: number;
      failed: number;
      openMs: number;
      firstError?: string;
    }[];
    const opened = ready.reduce((sum, r) => sum + r.opened, 0);
    const failed = ready.reduce((sum, r) => sum + r.failed, 0);
    const firstError = ready.find((r) => r.firstError)?.firstError;
    context.log(`idle streams: ${opened} open, ${failed} refused`);
    await sleep(2_000);
    const after = await serverStats(context, true);
    context.log(`idle streams: server counts ${after.openStreams} open streams`);

    await serverStats(context); // resets the event-loop delay histogram
    await sleep(5_000);
    const idle = await serverStats(context);

    // Each update goes to one conversation, watched by opened / conversations streams.
    for (let u = 0; u < updates; u++) {
      const started = performance.now();
      const conversationId = group(u % conversations);
      await context.receipts.sendReceipts(
        { conversationId, readerId: "reader", messageIds: [`${conversationId}-m${u}`] },
        { timeoutMs: 30_000 },
      );
      await sleep(Math.max(0, 1000 / perSecond - (performance.now() - started)));
    }
    const pushing = await serverStats(context);
    await sleep(2_000);
    for (const load of loads) load.collect();
    const results = await Promise.all(loads.map((l) => l.result));
    const delivered = results.reduce((sum, r) => sum + r.received, 0);
    const streamsPerConversation = opened / conversations;
    const delay = (s: typeof idle) => ({
      p50: round(s.eventLoopDelayP50Ms),
      p99: round(s.eventLoopDelayP99Ms),
      max: round(s.eventLoopDelayMaxMs),
    });
    return {
      target,
      opened,
      serverOpenStreams: after.openStreams,
      failed,
      ...(firstError ? { firstError } : {}),
      connections: loadProcesses * connectionsPerProcess,
      openSeconds: round(Math.max(...ready.map((r) => r.openMs)) / 1000, 1),
      bytesPerStream: {
        rss: Math.round((after.rssBytes - before.rssBytes) / Math.max(1, opened)),
        heap: Math.round((after.heapUsedBytes - before.heapUsedBytes) / Math.max(1, opened)),
      },
      serverRssMiB: round(after.rssBytes / 2 ** 20, 1),
      eventLoopDelayMs: { idle: delay(idle), pushing: delay(pushing) },
      pushed: {
        updates,
        perSecond,
        // Heartbeats (every 15 s) are counted too: at least this many.
        expectedDeliveries: Math.round(updates * streamsPerConversation),
        delivered,
      },
      floor: { target: "≥ 50,000 streams in one process", met: opened >= 50_000 },
    };
  }
}
