import type { WebhookEvent } from "../src/api/webhook-payload.js";
import { silentLogger } from "../src/logger.js";
import type { ChangeFeed } from "../src/store/change-feed.js";
import { RedisChangeFeed } from "../src/store/redis/redis-change-feed.js";
import { SqliteChangeFeed } from "../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteWebhookState } from "../src/store/sqlite/sqlite-webhook-state.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";
import { type DeliveryObserver, EndpointDelivery } from "../src/webhooks/endpoint-delivery.js";
import type { WebhookEndpoint } from "../src/webhooks/webhook-endpoint.js";
import { WebhookSender } from "../src/webhooks/webhook-sender.js";
import { median, round } from "./latency-stats.js";
import type { LoadTask } from "./load-tasks.js";

export interface DeliveryCostResult {
  readonly events: number;
  /** Process CPU µs per event, each round: logging the changes alone, and logging + delivering. */
  readonly logOnly: readonly number[];
  readonly logAndDeliver: readonly number[];
  /** Median of the paired rounds' differences: what delivering one event costs the service. */
  readonly deliveryUsPerEvent: number;
}

/**
 * The service's own cost of delivering one webhook event, apart from everything else a call
 * does: the change log of the store's deployment (SQLite, or Redis beside Cassandra), fed in
 * the shape of SendReceipts calls (32 calls of 10 receipts per turn, spread over the tenants),
 * with and without the service's EndpointDelivery posting them to the benchmark's receiver
 * (in another process), in rounds that alternate. Run pinned to the server's CPU; the
 * difference of CPU per event is the figure, free of the closed loop's noise that the
 * throughput ratio carries.
 */
export async function webhookDeliveryCost(
  task: Extract<LoadTask, { kind: "webhook-delivery-cost" }>,
): Promise<DeliveryCostResult> {
  const logOnly: number[] = [];
  const logAndDeliver: number[] = [];
  // A first pair unmeasured and shorter: the code both kinds run is compiled by then.
  const warmUp = { ...task, events: Math.ceil(task.events / 3 / 320) * 320 };
  await oneRound(warmUp, false, -2);
  await oneRound(warmUp, true, -1);
  for (let round_ = 0; round_ < task.rounds * 2; round_++) {
    const deliver = round_ % 2 === 1;
    const usPerEvent = await oneRound(task, deliver, round_);
    (deliver ? logAndDeliver : logOnly).push(usPerEvent);
  }
  return {
    events: task.events,
    logOnly,
    logAndDeliver,
    deliveryUsPerEvent: round(
      median(logAndDeliver.map((us, i) => us - (logOnly[i] ?? 0))) ?? Number.NaN,
      1,
    ),
  };
}

async function oneRound(
  task: Extract<LoadTask, { kind: "webhook-delivery-cost" }>,
  deliver: boolean,
  roundIndex: number,
): Promise<number> {
  const db = openSqliteDatabase(":memory:");
  const writes = new SqliteWriteBatcher(db);
  const { log } = task;
  const feed: ChangeFeed =
    log.kind === "sqlite"
      ? new SqliteChangeFeed(db, writes, { retentionMs: 86_400_000 })
      : await RedisChangeFeed.open({
          url: log.url,
          keyPrefix: `${log.keyPrefix}cost${roundIndex}:`,
          retentionMs: 86_400_000,
          logger: silentLogger,
        });
  // Leases and cursors in SQLite either way: a few writes a second, not what is measured.
  const state = new SqliteWebhookState(db, writes);
  const sender = new WebhookSender({ allowPrivate: true });
  let delivered = 0;
  let allDelivered: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    allDelivered = resolve;
  });
  const observer: DeliveryObserver = {
    delivered(_key, events: readonly WebhookEvent[]) {
      delivered += events.length;
      if (delivered >= task.events) allDelivered();
    },
    retried: () => undefined,
    failed: () => undefined,
    disabled: () => undefined,
    failing: () => undefined,
    lag: () => undefined,
  };
  const deliveries: EndpointDelivery[] = [];
  const running: Promise<void>[] = [];
  if (deliver) {
    for (const { tenant, url, secret } of task.endpoints) {
      const key = { tenant, endpoint: "bench" };
      const endpoint: WebhookEndpoint = {
        id: "bench",
        url,
        secrets: [secret],
        events: ["receipt.read"],
        enabled: true,
        concurrency: 4,
        timeoutMs: 10_000,
        batchSize: 100,
      };
      await state.acquireLease(key, "bench", 600_000);
      const delivery = new EndpointDelivery({
        key,
        endpoint: () => endpoint,
        feed,
        state,
        sender,
        owner: "bench",
        retryPeriodMs: 600_000,
        backoffBaseMs: 50,
        backoffMaxMs: 1_000,
        observer,
        logger: silentLogger,
      });
      await delivery.started;
      running.push(delivery.run());
      deliveries.push(delivery);
    }
  }
  const tenants = task.endpoints.map((e) => e.tenant);
  const started = process.cpuUsage();
  for (let first = 0; first < task.events; first += 320) {
    await Promise.all(
      Array.from({ length: 32 }, (_, call) =>
        feed.publish(
          tenants[call % tenants.length] as string,
          Array.from({ length: 10 }, (_, k) =>
            receiptChange(task.prefix, roundIndex, first + call * 10 + k),
          ),
        ),
      ),
    );
    // About the throughput round's pace: 32 calls' receipts every 100 ms.
    await new Promise((resolve) => setTimeout(resolve, task.turnMs));
  }
  if (deliver) await done;
  const cpu = process.cpuUsage(started);
  for (const delivery of deliveries) delivery.stop();
  await Promise.all(running); // their last cursor writes, before the database closes
  sender.close();
  await feed.close();
  db.close();
  return round((cpu.user + cpu.system) / task.events, 1);
}

function receiptChange(prefix: string, roundIndex: number, n: number) {
  const conversationId = `${prefix}r${roundIndex}g${n % 13}`;
  const readAt = 1_790_000_000_000 + n;
  return {
    kind: "receipt" as const,
    readerId: `${prefix}u${n % 21}`,
    readAt,
    receipt: {
      message: {
        conversationId,
        conversationType: "group" as const,
        messageId: `${conversationId}m${Math.floor(n / 13)}`,
        senderId: `${prefix}s`,
        receiverId: "",
        sentAt: readAt - 60_000,
      },
      readCount: 3,
      unreadCount: 17,
      receiverRead: false,
    },
  };
}
