import { randomBytes, randomUUID } from "node:crypto";
import type { Client } from "cassandra-driver";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect } from "vitest";
import type { TrackedMessage } from "../../src/domain/model.js";
import { CassandraReceiptStore } from "../../src/store/cassandra/cassandra-receipt-store.js";
import type { RedisReadCountCache } from "../../src/store/redis/redis-read-count-cache.js";
import { SqliteChangeFeed } from "../../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../../src/store/sqlite/sqlite-database.js";
import { SqliteWriteBatcher } from "../../src/store/sqlite/sqlite-write-batcher.js";
import { createTestKeyspace } from "./cassandra-test-keyspace.js";
import { minutes } from "./fixtures.js";

type TestKeyspace = Awaited<ReturnType<typeof createTestKeyspace>>;
let current: TestKeyspace | undefined;

/**
 * The Cassandra store test files' shared fixtures. Each file calls useCassandraKeyspace()
 * once: one keyspace for the file (every test works in its own tenant), and its keys on the
 * shared Redis removed at the end.
 */
export function useCassandraKeyspace(): void {
  beforeAll(async () => {
    current = await createTestKeyspace();
  });
  afterAll(async () => {
    const redis = new Redis(sharedRedisUrl);
    const keys = await redis.keys(`${sharedPrefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    await current?.drop();
    current = undefined;
  });
}

/** The file's keyspace (see useCassandraKeyspace). */
export const keyspace = {
  get client(): Client {
    return need().client;
  },
  get keyspace(): string {
    return need().keyspace;
  },
};

function need(): TestKeyspace {
  if (current === undefined) throw new Error("useCassandraKeyspace() was not called");
  return current;
}

export const sharedRedisUrl = "redis://127.0.0.1:6379";
/** Keys of this file on the shared Redis, removed at the end. */
export const sharedPrefix = `receipts-test:${randomBytes(4).toString("hex")}:`;

export const newTenant = () => `t-${randomUUID()}`;

export function groupMessage(
  messageId: string,
  groupId: string,
  senderId: string,
  sentAt: number,
): TrackedMessage {
  return {
    conversationId: groupId,
    conversationType: "group",
    messageId,
    senderId,
    sentAt,
    receiverId: "",
  };
}

export function cassandraStore(
  client: Client,
  options: {
    cache?: RedisReadCountCache;
    membershipLockLeaseMs?: number;
    localCacheEntries?: number;
    outboxWriterLapseMs?: number;
  } = {},
): CassandraReceiptStore {
  // Every other store of a test is taken for a dead writer at once, as a killed instance is,
  // unless a test gives its lapse: sweeps of one store publish what another kept.
  return new CassandraReceiptStore(client, {
    keyspace: keyspace.keyspace,
    outboxWriterLapseMs: 0,
    ...options,
  });
}

/** A group with `members` from minute 0 and one message by its first member at minute 10. */
export async function seedGroup(
  store: CassandraReceiptStore,
  tenant: string,
  members: readonly string[],
  groupId = "g",
): Promise<TrackedMessage> {
  for (let i = 0; i < members.length; i += 1_000) {
    await store.openMemberships(tenant, groupId, members.slice(i, i + 1_000), minutes(0));
  }
  const message = groupMessage(`m-${randomUUID()}`, groupId, members[0] as string, minutes(10));
  expect((await store.insertMessages(tenant, [message])).size).toBe(0);
  return message;
}

export async function readAll(
  store: CassandraReceiptStore,
  tenant: string,
  message: TrackedMessage,
) {
  return (await store.readCounts(tenant, [message])).get(message.messageId);
}

/** A change feed on its own in-memory SQLite connection. */
export function embeddedFeed(): SqliteChangeFeed {
  const db = openSqliteDatabase(":memory:");
  return new SqliteChangeFeed(db, new SqliteWriteBatcher(db), { retentionMs: 86_400_000 });
}

/** Receipt records (receipts_by_reader) of these readers in the conversation, read directly. */
export async function receiptRecordCount(
  tenant: string,
  conversationId: string,
  readerIds: readonly string[],
): Promise<number> {
  let rows = 0;
  for (const readerId of readerIds) {
    const result = await keyspace.client.execute(
      `SELECT message_id FROM ${keyspace.keyspace}.receipts_by_reader
       WHERE tenant = ? AND conversation_id = ? AND reader_id = ?`,
      [tenant, conversationId, readerId],
      { prepare: true },
    );
    rows += result.rowLength;
  }
  return rows;
}
