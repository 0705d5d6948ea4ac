import * as grpc from "@grpc/grpc-js";
import { ReadFilter, ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { closedLoop } from "./closed-loop.js";
import { grpcClient, unary } from "./grpc-load-client.js";
import { nowMs } from "./latency-stats.js";
import type { LoadTask, MixResult, MixWindow, ThroughputResult } from "./load-tasks.js";
import { callCount, groupId, messageId, type ReceiptCall, receiptCall } from "./workload.js";

/**
 * SendReceipts of one call of the workload. With tenants, group g belongs to tenant
 * g % apiKeys.length and is sent with that tenant's API key.
 */
export function sendReceiptCall(
  client: grpc.Client,
  call: ReceiptCall,
  apiKeys: readonly string[] = [],
): Promise<unknown> {
  const metadata = new grpc.Metadata();
  if (apiKeys.length > 0)
    metadata.set("authorization", `Bearer ${apiKeys[call.group % apiKeys.length]}`);
  return unary<{ receipts: unknown[] }>(
    client,
    "sendReceipts",
    { conversationId: call.conversationId, readerId: call.readerId, messageIds: call.messageIds },
    metadata,
  );
}

export async function sendReceipts(
  task: Extract<LoadTask, { kind: "send" }>,
): Promise<ThroughputResult> {
  const clients = Array.from({ length: task.connections }, (_, i) =>
    grpcClient(ReadReceiptService, task.address, i),
  );
  const total = callCount(task.workload);
  let next = task.worker;
  let turn = 0;
  const result = await closedLoop(task.concurrency, task.durationMs, () => {
    if (next >= total) return undefined;
    const call = receiptCall(task.workload, next);
    next += task.workers;
    const client = clients[turn++ % clients.length] as grpc.Client;
    return sendReceiptCall(client, call, task.apiKeys).then(() => call.messageIds.length);
  });
  for (const client of clients) client.close();
  return result;
}

/** Open-loop mixed load: each kind paced at its rate; latency from the moment a call is sent. */
export async function mix(task: Extract<LoadTask, { kind: "mix" }>): Promise<MixResult> {
  const client = grpcClient(ReadReceiptService, task.address, task.worker);
  const w = task.workload;
  const total = callCount(w);
  let nextSend = task.worker;
  let firstError: string | undefined;
  const windows: MixWindow[] = [];
  const started = nowMs();
  const windowOf = (at: number): MixWindow => {
    const index = Math.floor((at - started) / task.windowMs);
    while (windows.length <= index) {
      windows.push({
        startMs: windows.length * task.windowMs,
        latenciesMs: { send: [], get: [], list: [] },
        errors: 0,
      });
    }
    return windows[index] as MixWindow;
  };
  const issue = (kind: "send" | "get" | "list", request: () => Promise<unknown>) => {
    const at = nowMs();
    request().then(
      () => windowOf(at).latenciesMs[kind].push(nowMs() - at),
      (error: unknown) => {
        (windowOf(at) as { errors: number }).errors += 1;
        firstError ??= error instanceof Error ? error.message : String(error);
      },
    );
  };
  let seq = 0;
  const kinds = {
    send: () => {
      if (nextSend >= total) nextSend = task.worker; // wrapped around: repeats are idempotent
      const call = receiptCall(w, nextSend);
      nextSend += task.workers;
      return unary(client, "sendReceipts", {
        conversationId: call.conversationId,
        readerId: call.readerId,
        messageIds: call.messageIds,
      });
    },
    get: () => {
      const g = seq++ % w.groups;
      return unary(client, "getReceipts", {
        conversationId: groupId(w, g),
        messageIds: Array.from({ length: Math.min(10, w.messagesPerGroup) }, (_, k) =>
          messageId(w, g, k),
        ),
      });
    },
    list: () => {
      const g = seq++ % w.groups;
      return unary(client, "listReadMembers", {
        conversationId: groupId(w, g),
        messageId: messageId(w, g, 0),
        filter: seq % 2 === 0 ? ReadFilter.READ : ReadFilter.UNREAD,
        pageSize: 200,
      });
    },
  };
  const timers = (Object.keys(kinds) as (keyof typeof kinds)[]).map((kind) => {
    const rate = task.rates[kind];
    if (rate <= 0) return undefined;
    // Ticks of 10 ms, each sending the calls due since the start.
    let sent = 0;
    return setInterval(() => {
      const due = Math.floor(((nowMs() - started) / 1000) * rate);
      while (sent < due) {
        sent += 1;
        issue(kind, kinds[kind]);
      }
    }, 10);
  });
  await new Promise((resolve) => setTimeout(resolve, task.durationMs));
  for (const timer of timers) if (timer) clearInterval(timer);
  await new Promise((resolve) => setTimeout(resolve, 2_000)); // let the last calls finish
  client.close();
  return {
    windows: windows.slice(0, Math.ceil(task.durationMs / task.windowMs)),
    ...(firstError ? { firstError } : {}),
  };
}
