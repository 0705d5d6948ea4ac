import type * as grpc from "@grpc/grpc-js";
import { ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { BenchService } from "./gen/bench/v1/bench_pb.js";
import { grpcClient, serverStream } from "./grpc-load-client.js";
import { nowMs } from "./latency-stats.js";
import { nextMessage, reply } from "./load-ipc.js";
import type { LoadTask, StreamsResult } from "./load-tasks.js";

/** Opens the streams, answers `ready`, records arrivals until asked to `collect`. */
export async function openStreams(
  task: Extract<LoadTask, { kind: "streams" }>,
): Promise<undefined> {
  const service = task.method === "watch" ? ReadReceiptService : BenchService;
  const method = task.method === "watch" ? "watchReceipts" : "subscribe";
  const clients = Array.from({ length: task.connections }, (_, i) =>
    grpcClient(service, task.address, i),
  );
  const arrivals: Record<string, number[]> = {};
  const calls: grpc.ClientReadableStream<unknown>[] = [];
  let opened = 0;
  let failed = 0;
  let received = 0;
  let firstError: string | undefined;
  const started = performance.now();
  let settled = 0;
  await new Promise<void>((resolve) => {
    const settle = () => {
      settled += 1;
      if (settled === task.streams) {
        clearInterval(stalled);
        resolve();
      }
    };
    // Streams the server never answers (refused, queued behind a limit) must not hang the run;
    // but a server still working through tens of thousands of opens may answer none for a
    // while (the first full run on Cassandra gave up after 15 s with 0 of 12,500 answered,
    // then the server counted 49,944 open).
    let seen = 0;
    const stalled = setInterval(() => {
      if (settled === seen) {
        clearInterval(stalled);
        resolve();
      }
      seen = settled;
    }, 60_000);
    for (let i = 0; i < task.streams; i++) {
      const client = clients[i % clients.length] as grpc.Client;
      const request =
        task.method === "watch"
          ? { conversationIds: [task.conversationIds[i % task.conversationIds.length]] }
          : {};
      const call = serverStream<Record<string, unknown>>(client, method, request);
      calls.push(call);
      let first = true;
      call.on("data", (message: Record<string, unknown>) => {
        const at = nowMs();
        if (first) {
          first = false;
          opened += 1;
          settle();
          return;
        }
        received += 1;
        if (!task.record) return;
        const key = eventKey(message);
        let times = arrivals[key];
        if (times === undefined) {
          times = [];
          arrivals[key] = times;
        }
        times.push(at);
      });
      call.on("error", (error: grpc.ServiceError) => {
        if (error.code === 1) return; // cancelled by us
        if (first) {
          first = false;
          failed += 1;
          firstError ??= error.message;
          settle();
        }
      });
    }
  });
  const openMs = performance.now() - started;
  if (settled < task.streams) firstError ??= `${task.streams - settled} streams never answered`;
  reply({ ready: { opened, failed, openMs, ...(firstError ? { firstError } : {}) } });
  await nextMessage();
  const result: StreamsResult = {
    opened,
    failed,
    openMs,
    arrivals,
    received,
    ...(firstError ? { firstError } : {}),
  };
  reply({ result });
  await nextMessage();
  for (const call of calls) call.cancel();
  for (const client of clients) client.close();
  return undefined;
}

function eventKey(message: Record<string, unknown>): string {
  if (typeof message.sequence === "bigint") return String(message.sequence);
  const update = message.update as { case?: string; value?: { receipt?: unknown } } | undefined;
  const receipt = update?.value?.receipt as { messageId?: string } | undefined;
  return `${update?.case}:${receipt?.messageId ?? ""}`;
}
