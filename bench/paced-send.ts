import { ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { grpcClient } from "./grpc-load-client.js";
import { nowMs } from "./latency-stats.js";
import type { LoadTask, PacedSendResult } from "./load-tasks.js";
import { sendReceiptCall } from "./rpc-load.js";
import { callCount, receiptCall } from "./workload.js";

/** How a receipt is named on both sides: the sender's acknowledgement and the webhook's event. */
export const receiptKey = (messageId: string, readerId: string): string =>
  `${messageId}/${readerId}`;

/**
 * SendReceipts open-loop: each tick sends the calls due since the start at the offered rate,
 * whether or not earlier ones were answered (a slow server meets the same load, as clients
 * would make it), and records the wall-clock moment each receipt's answer arrived.
 */
export async function pacedSend(
  task: Extract<LoadTask, { kind: "paced-send" }>,
): Promise<PacedSendResult> {
  const client = grpcClient(ReadReceiptService, task.address, task.worker);
  const w = task.workload;
  const total = callCount(w);
  const acknowledgedAt: Record<string, number> = {};
  const latenciesMs: number[] = [];
  let next = task.worker;
  let sent = 0;
  let pending = 0;
  let calls = 0;
  let errors = 0;
  let firstError: string | undefined;
  const callsPerSecond = task.receiptsPerSecond / w.idsPerCall;
  const started = nowMs();
  const issue = () => {
    if (next >= total) throw new Error(`paced send: the workload holds only ${total} calls`);
    const call = receiptCall(w, next);
    next += task.workers;
    const at = nowMs();
    pending += 1;
    sendReceiptCall(client, call, task.apiKeys).then(
      () => {
        const answered = nowMs();
        for (const id of call.messageIds) acknowledgedAt[receiptKey(id, call.readerId)] = answered;
        latenciesMs.push(answered - at);
        calls += 1;
        pending -= 1;
      },
      (error: unknown) => {
        errors += 1;
        firstError ??= error instanceof Error ? error.message : String(error);
        pending -= 1;
      },
    );
  };
  const timer = setInterval(() => {
    const due = Math.floor(((nowMs() - started) / 1000) * callsPerSecond);
    for (; sent < due; sent += 1) issue();
  }, task.tickMs);
  await new Promise((resolve) => setTimeout(resolve, task.durationMs));
  clearInterval(timer);
  const elapsedMs = nowMs() - started;
  // The last calls are answered (or fail) before the acknowledgements are handed over.
  for (const giveUp = nowMs() + 30_000; pending > 0 && nowMs() < giveUp; ) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  client.close();
  return {
    calls,
    errors,
    elapsedMs,
    latenciesMs,
    acknowledgedAt,
    ...(firstError ? { firstError } : {}),
  };
}
