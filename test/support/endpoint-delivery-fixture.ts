import { afterEach, expect } from "vitest";
import type { ReceiptChange } from "../../src/domain/model.js";
import { silentLogger } from "../../src/logger.js";
import type { ChangeFeed } from "../../src/store/change-feed.js";
import { SqliteChangeFeed } from "../../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../../src/store/sqlite/sqlite-database.js";
import { SqliteWebhookState } from "../../src/store/sqlite/sqlite-webhook-state.js";
import { SqliteWriteBatcher } from "../../src/store/sqlite/sqlite-write-batcher.js";
import { type DeliveryObserver, EndpointDelivery } from "../../src/webhooks/endpoint-delivery.js";
import { WebhookSender } from "../../src/webhooks/webhook-sender.js";
import { newWebhookSecret, WebhookReceiver } from "./webhook-receiver.js";

const quiet: DeliveryObserver = {
  delivered() {},
  retried() {},
  failed() {},
  disabled() {},
  failing() {},
  lag() {},
};

export const horizon = (n: number): ReceiptChange => ({
  kind: "horizon",
  conversationId: `c${n}`,
  readerId: "r",
  readUpTo: 1_000 + n,
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * One endpoint's EndpointDelivery on an in-memory SQLite log, posting to a real receiver in
 * this process, with its reads of the log counted; stopped and closed after each test.
 */
export async function deliveryReading(options: {
  pollMs: number;
  batchSize?: number;
  clock?: () => number;
  lingerMs?: number;
}) {
  const db = openSqliteDatabase(":memory:");
  const writes = new SqliteWriteBatcher(db);
  const feed = new SqliteChangeFeed(db, writes, { retentionMs: 3_600_000 });
  let reads = 0;
  const counted: ChangeFeed = {
    publish: (tenant, changes) => feed.publish(tenant, changes),
    readAfter: (tenant, position, limit) => {
      reads += 1;
      return feed.readAfter(tenant, position, limit);
    },
    head: (tenant) => feed.head(tenant),
    listen: (tenant, listener) => feed.listen(tenant, listener),
    ring: (tenant, bell) => feed.ring(tenant, bell),
    forgetReceipts: (tenant, receipts) => feed.forgetReceipts(tenant, receipts),
    comparePositions: (a, b) => feed.comparePositions(a, b),
    isPosition: (position) => feed.isPosition(position),
    close: () => feed.close(),
  };
  const receiver = await new WebhookReceiver().listen();
  const key = { tenant: "acme", endpoint: "main" };
  const state = new SqliteWebhookState(db, writes);
  expect(await state.acquireLease(key, "test", 600_000)).toBe(true);
  const delivery = new EndpointDelivery({
    key,
    endpoint: () => ({
      id: "main",
      url: receiver.url,
      secrets: [newWebhookSecret()],
      events: ["conversation.read"],
      enabled: true,
      concurrency: 4,
      timeoutMs: 5_000,
      batchSize: options.batchSize ?? 100,
    }),
    feed: counted,
    state,
    sender: new WebhookSender({ allowPrivate: true }),
    owner: "test",
    retryPeriodMs: 60_000,
    backoffBaseMs: 10,
    backoffMaxMs: 100,
    observer: quiet,
    logger: silentLogger,
    pollMs: options.pollMs,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.lingerMs === undefined ? {} : { lingerMs: options.lingerMs }),
  });
  await delivery.started;
  const running = delivery.run();
  cleanups.push(async () => {
    delivery.stop();
    await running;
    await receiver.close();
    await feed.close();
    db.close();
  });
  return { db, writes, feed, receiver, reads: () => reads };
}
