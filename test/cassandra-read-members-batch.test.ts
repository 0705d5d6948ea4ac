import { randomUUID } from "node:crypto";
import type { Client } from "cassandra-driver";
import { afterAll, beforeAll, expect, it } from "vitest";
import { AccessPolicy } from "../src/domain/access-policy.js";
import { serviceCaller } from "../src/domain/caller.js";
import { limits } from "../src/domain/limits.js";
import { ReceiptService } from "../src/domain/receipt-service.js";
import { defaultTenantSettings } from "../src/domain/tenant-settings.js";
import { CassandraReceiptStore } from "../src/store/cassandra/cassandra-receipt-store.js";
import { SqliteChangeFeed } from "../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";
import {
  connectTestClient,
  createTestKeyspace,
  RequestCounter,
} from "./support/cassandra-test-keyspace.js";
import { minutes, users } from "./support/fixtures.js";

let keyspace: Awaited<ReturnType<typeof createTestKeyspace>>;
let counter: RequestCounter;
let client: Client;
let receipts: ReceiptService;
const tenant = `t-${randomUUID()}`;
const memberCount = 10_000;
const messageIds = Array.from({ length: limits.maxIdsPerBatchGetReadMembers }, (_, i) => `m${i}`);

beforeAll(async () => {
  keyspace = await createTestKeyspace();
  counter = new RequestCounter();
  client = connectTestClient({ requestTracker: counter });
  const store = new CassandraReceiptStore(client, { keyspace: keyspace.keyspace });
  receipts = new ReceiptService({
    store,
    feed: embeddedFeed(),
    policy: new AccessPolicy({
      store,
      settingsOf: () => ({ ...defaultTenantSettings, maxGroupSizeForMemberLists: memberCount }),
    }),
  });
  const members = users("u", memberCount);
  for (let i = 0; i < memberCount; i += 1_000) {
    await store.openMemberships(tenant, "g", members.slice(i, i + 1_000), minutes(0));
  }
  await receipts.trackMessages(
    tenant,
    serviceCaller,
    messageIds.map((messageId, i) => ({
      conversationId: "g",
      conversationType: "group" as const,
      messageId,
      senderId: "u000000",
      sentAt: minutes(10 + i),
      receiverId: "",
    })),
  );
  // Every 50th member read every message: the READ pages are full, the UNREAD pages too.
  const readers = members.filter((_, i) => i % 50 === 7);
  for (let i = 0; i < readers.length; i += 20) {
    await Promise.all(
      readers.slice(i, i + 20).map((readerId) =>
        receipts.sendReceipts(tenant, serviceCaller, {
          conversationId: "g",
          readerId,
          messageIds,
        }),
      ),
    );
  }
}, 240_000);

afterAll(async () => {
  await client?.shutdown();
  await keyspace?.drop();
});

it("reads a 50-message BatchGetReadMembers in a 10,000-member group in a few requests per page", async () => {
  const pageSize = 100;
  await receipts.announcer.idle(); // publishes of the receipts above run after their answers
  counter.reset();
  const found = await receipts.batchGetReadMembers(tenant, serviceCaller, {
    conversationId: "g",
    messageIds,
    pageSize,
  });
  expect(found.map((f) => [f.read.items.length, f.unread.items.length])).toEqual(
    messageIds.map(() => [pageSize, pageSize]),
  );
  const pages = messageIds.length;
  // Per message: its readers counted (no cache here); one READ slice (LIMIT page + 1); for
  // UNREAD, member intervals in slices of page + 16 rows (the second slice for the look-ahead
  // past the page's last member) and one read of the readers among them. Reading the whole
  // group instead would take 10,000 / 117 = 86 requests of members per message.
  expect(counter.requests(/COUNT\(\*\)/)).toBe(pages);
  expect(counter.requests(/FROM \S+\.readers_by_message\s+WHERE .* reader_id > \? LIMIT/s)).toBe(
    pages,
  );
  expect(counter.requests(/FROM \S+\.readers_by_message\s+WHERE .* reader_id <= \?/s)).toBe(pages);
  expect(counter.count("memberships")).toBeLessThanOrEqual(2 * pages);
  // And the group's size at the messages' times, read once for all 50.
  expect(counter.count("group_sizes")).toBeLessThanOrEqual(2);
  expect(counter.count()).toBeLessThanOrEqual(5 * pages + 2);
}, 60_000);

/** A change feed on its own in-memory SQLite connection. */
function embeddedFeed(): SqliteChangeFeed {
  const db = openSqliteDatabase(":memory:");
  return new SqliteChangeFeed(db, new SqliteWriteBatcher(db), { retentionMs: 86_400_000 });
}
