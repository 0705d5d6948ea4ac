import { afterEach, describe, expect, it } from "vitest";
import type { ReceiptChange } from "../src/domain/model.js";
import { silentLogger } from "../src/logger.js";
import type { ChangeFeed } from "../src/store/change-feed.js";
import { SqliteChangeFeed } from "../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteWebhookState } from "../src/store/sqlite/sqlite-webhook-state.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";
import { type DeliveryObserver, EndpointDelivery } from "../src/webhooks/endpoint-delivery.js";
import { WebhookSender } from "../src/webhooks/webhook-sender.js";
import { newWebhookSecret, WebhookReceiver } from "./support/webhook-receiver.js";

/** How often an endpoint's delivery reads the change log: once per publish, not once per wake. */

const quiet: DeliveryObserver = {
  delivered() {},
  retried() {},
  failed() {},
  disabled() {},
  failing() {},
  lag() {},
};

const horizon = (n: number): ReceiptChange => ({
  kind: "horizon",
  conversationId: `c${n}`,
  readerId: "r",
  readUpTo: 1_000 + n,
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function deliveryReading(options: { pollMs: number; batchSize?: number }) {
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

describe("webhook delivery's reads of the change log", () => {
  it("reads the log once per publish while it keeps up, whatever else wakes it", async () => {
    const { feed, receiver, reads } = await deliveryReading({ pollMs: 60_000 });
    await receiver.until(() => reads() >= 1);
    const before = reads();
    for (let n = 1; n <= 10; n++) {
      await feed.publish("acme", [horizon(n)]);
      await receiver.until(() => receiver.events().length === n);
    }
    // Each publish rang once; the POSTs that completed and the lingers that ended woke the
    // loop too, and those needed no read.
    expect(reads() - before).toBe(10);
    expect(receiver.events().map((e) => e.data.conversationId)).toEqual(
      Array.from({ length: 10 }, (_, i) => `c${i + 1}`),
    );
  });

  it("reads on at once after a full read, without waiting for the poll", async () => {
    const { feed, receiver } = await deliveryReading({ pollMs: 60_000 });
    // One ring for 2,500 changes: reads of 1,000, 1,000 and 500, one after the other.
    await feed.publish(
      "acme",
      Array.from({ length: 2_500 }, (_, i) => horizon(i)),
    );
    await receiver.until(() => receiver.events().length === 2_500, 10_000);
  });

  it("finds by its poll a change whose ring it never heard", async () => {
    const { db, writes, receiver, reads } = await deliveryReading({ pollMs: 200 });
    await receiver.until(() => reads() >= 1);
    // Appended through another feed on the same database, as by another process: no ring here.
    const elsewhere = new SqliteChangeFeed(db, writes, { retentionMs: 3_600_000 });
    await elsewhere.publish("acme", [horizon(1)]);
    await receiver.until(() => receiver.events().length === 1, 2_000);
    const idle = reads();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(reads() - idle).toBeGreaterThanOrEqual(3);
    expect(reads() - idle).toBeLessThanOrEqual(6);
  });
});
