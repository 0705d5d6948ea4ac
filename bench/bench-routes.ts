import { monitorEventLoopDelay } from "node:perf_hooks";
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  BenchService,
  EmptyResponseSchema,
  type SubscribeResponse,
  SubscribeResponseSchema,
} from "./gen/bench/v1/bench_pb.js";

/**
 * bench.v1.BenchService: calls that do nothing but cross the same server,
 * adapter and interceptors as the API, so that the API's figures can be read
 * against them; plus the server process's own figures (Stats).
 */
export function registerBenchRoutes(
  router: ConnectRouter,
  openStreams: () => Promise<number>,
): void {
  const listeners = new Set<(sequence: bigint) => void>();
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  let cpu = process.cpuUsage();
  const empty = create(EmptyResponseSchema);
  router.service(BenchService, {
    empty: () => empty,

    async *subscribe(_request, context) {
      const queue: bigint[] = [];
      let wake: (() => void) | undefined;
      const listener = (sequence: bigint) => {
        queue.push(sequence);
        wake?.();
      };
      listeners.add(listener);
      const onAbort = () => wake?.();
      context.signal.addEventListener("abort", onAbort);
      try {
        yield create(SubscribeResponseSchema, { sequence: 0n });
        while (!context.signal.aborted) {
          const next = queue.shift();
          if (next !== undefined) {
            yield create(SubscribeResponseSchema, { sequence: next }) as SubscribeResponse;
            continue;
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
      } finally {
        context.signal.removeEventListener("abort", onAbort);
        listeners.delete(listener);
      }
    },

    broadcast(request) {
      for (const listener of listeners) listener(request.sequence);
      return { deliveredTo: listeners.size };
    },

    async stats(request) {
      const gc = (globalThis as { gc?: () => void }).gc;
      if (request.collectGarbage && gc !== undefined) gc();
      const memory = process.memoryUsage();
      const used = process.cpuUsage(cpu);
      cpu = process.cpuUsage();
      const ms = (ns: number) => (Number.isFinite(ns) ? ns / 1e6 : 0);
      const answer = {
        rssBytes: memory.rss,
        heapUsedBytes: memory.heapUsed,
        externalBytes: memory.external + memory.arrayBuffers,
        activeHandles: process.getActiveResourcesInfo().length,
        eventLoopDelayP50Ms: ms(delay.percentile(50)),
        eventLoopDelayP99Ms: ms(delay.percentile(99)),
        eventLoopDelayMaxMs: ms(delay.max),
        cpuUserMs: used.user / 1000,
        cpuSystemMs: used.system / 1000,
        openStreams: await openStreams(),
      };
      delay.reset();
      return answer;
    },
  });
}
