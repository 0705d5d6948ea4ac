import { randomBytes, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { type Client, types } from "cassandra-driver";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { MembershipService as MembershipRpc } from "../gen/receipts/v1/membership_pb.js";
import {
  ConversationType,
  ReadReceiptService,
  TrackedMessageSchema,
} from "../gen/receipts/v1/receipts_pb.js";
import { ConfigError, loadConfig } from "../src/config.js";
import { StoreUnavailableError } from "../src/domain/errors.js";
import { MembershipService } from "../src/domain/membership-service.js";
import type { ReadMember, TrackedMessage } from "../src/domain/model.js";
import { ReceiptService } from "../src/domain/receipt-service.js";
import { createCassandraClient } from "../src/store/cassandra/cassandra-client.js";
import { CassandraReceiptStore } from "../src/store/cassandra/cassandra-receipt-store.js";
import { applyCassandraSchema, loadSchemaFiles } from "../src/store/cassandra/cassandra-schema.js";
import { connectRedis } from "../src/store/redis/redis-connection.js";
import { RedisReadCountCache } from "../src/store/redis/redis-read-count-cache.js";
import { SqliteChangeFeed } from "../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { describeReadMembersBatchContract } from "./read-members-batch-contract.js";
import { describeReceiptContract } from "./store-contract.js";
import { cassandraCacheBackend } from "./support/cassandra-cache-backend.js";
import {
  cassandraLocalDc,
  connectTestClient,
  createTestKeyspace,
  RequestCounter,
  testReplication,
} from "./support/cassandra-test-keyspace.js";
import { minutes, users } from "./support/fixtures.js";
import { RedisServerProcess } from "./support/redis-server.js";
import { TcpProxy } from "./support/tcp-proxy.js";
import { startTestServer } from "./support/test-server.js";

/** One keyspace for this file; every test works in its own tenant. */
let keyspace: Awaited<ReturnType<typeof createTestKeyspace>>;
const sharedRedisUrl = "redis://127.0.0.1:6379";
/** Keys of this file on the shared Redis, removed at the end. */
const sharedPrefix = `receipts-test:${randomBytes(4).toString("hex")}:`;

beforeAll(async () => {
  keyspace = await createTestKeyspace();
});

afterAll(async () => {
  const redis = new Redis(sharedRedisUrl);
  const keys = await redis.keys(`${sharedPrefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  await keyspace?.drop();
});

const newTenant = () => `t-${randomUUID()}`;

function groupMessage(
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

function cassandraStore(
  client: Client,
  options: {
    cache?: RedisReadCountCache;
    membershipLockLeaseMs?: number;
    localCacheEntries?: number;
  } = {},
): CassandraReceiptStore {
  return new CassandraReceiptStore(client, { keyspace: keyspace.keyspace, ...options });
}

/** A group with `members` from minute 0 and one message by its first member at minute 10. */
async function seedGroup(
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

async function readAll(store: CassandraReceiptStore, tenant: string, message: TrackedMessage) {
  return (await store.readCounts(tenant, [message])).get(message.messageId);
}

const openCassandraBackend = async () =>
  cassandraCacheBackend(
    keyspace.client,
    keyspace.keyspace,
    connectRedis(sharedRedisUrl),
    sharedPrefix,
  );

describeReceiptContract("Cassandra + Redis", openCassandraBackend);
describeReadMembersBatchContract("Cassandra + Redis", openCassandraBackend);

describe("Cassandra store with the Redis read-count cache", () => {
  let redisServer: RedisServerProcess;
  let counter: RequestCounter;
  let client: Client;
  let redis: Redis;
  let cache: RedisReadCountCache;
  let store: CassandraReceiptStore;
  /** The same data without a cache: the truth, straight from Cassandra. */
  let plain: CassandraReceiptStore;
  let tenant: string;

  beforeAll(async () => {
    redisServer = await RedisServerProcess.start();
    counter = new RequestCounter();
    client = connectTestClient({ requestTracker: counter });
    redis = connectRedis(redisServer.url, { commandTimeoutMs: 300 });
    cache = new RedisReadCountCache(redis, { keyPrefix: "rr:", ttlMs: 60_000 });
    store = cassandraStore(client, { cache });
    plain = cassandraStore(keyspace.client);
  });

  afterAll(async () => {
    await cache?.close();
    redis?.disconnect();
    await client?.shutdown();
    await redisServer?.stop();
  });

  afterEach(async () => {
    // A test that killed the server leaves it running again for the next one.
    await redisServer.restart().catch(() => undefined);
  });

  const redisReady = async () => {
    for (let i = 0; i < 200 && redis.status !== "ready"; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(redis.status).toBe("ready");
  };

  const entryKey = (message: TrackedMessage) =>
    `rr:rc:{${encodeURIComponent(tenant)}/${encodeURIComponent(message.messageId)}}:set`;

  it("answers a hot count from Redis without a single Cassandra request", async () => {
    tenant = newTenant();
    const message = await seedGroup(store, tenant, users("u", 6));
    for (const reader of ["u000001", "u000002", "u000003"]) {
      await store.insertReceipts(tenant, reader, [{ message, readAt: minutes(11) }]);
    }
    expect(await readAll(store, tenant, message)).toBe(3);

    counter.reset();
    expect(await readAll(store, tenant, message)).toBe(3);
    expect(counter.queries).toEqual([]);

    // A first receipt on a hot entry: stored in Cassandra, counted in Redis.
    counter.reset();
    const [recorded] = await store.insertReceipts(tenant, "u000004", [
      { message, readAt: minutes(12) },
    ]);
    expect(recorded).toMatchObject({ inserted: true, readCount: 4 });
    expect(counter.queries.some((q) => /COUNT\(\*\)|SELECT reader_id FROM/.test(q))).toBe(false);
    expect(await redis.scard(entryKey(message))).toBe(5); // 4 readers and the sentinel
  });

  it("rebuilds a cold entry from the readers partition, then serves it hot", async () => {
    tenant = newTenant();
    const message = await seedGroup(store, tenant, users("u", 8));
    for (const reader of users("u", 8).slice(1, 6)) {
      await plain.insertReceipts(tenant, reader, [{ message, readAt: minutes(11) }]);
    }
    counter.reset();
    expect(await readAll(store, tenant, message)).toBe(5);
    expect(counter.count("readers_by_message")).toBeGreaterThan(0);

    counter.reset();
    expect(await readAll(store, tenant, message)).toBe(5);
    expect(counter.count()).toBe(0);
  });

  it("lets entries expire after the TTL", async () => {
    tenant = newTenant();
    const shortRedis = connectRedis(redisServer.url);
    const shortCache = new RedisReadCountCache(shortRedis, { keyPrefix: "short:", ttlMs: 1_500 });
    const shortLived = cassandraStore(client, { cache: shortCache });
    try {
      await new Promise((resolve) => shortRedis.once("ready", resolve));
      const message = await seedGroup(shortLived, tenant, users("u", 3));
      await shortLived.insertReceipts(tenant, "u000001", [{ message, readAt: minutes(11) }]);
      expect(await readAll(shortLived, tenant, message)).toBe(1);
      counter.reset();
      expect(await readAll(shortLived, tenant, message)).toBe(1);
      expect(counter.count()).toBe(0);

      const key = `short:rc:{${encodeURIComponent(tenant)}/${encodeURIComponent(message.messageId)}}:set`;
      const ttl = await shortRedis.pttl(key); // -1 would mean "never expires"
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(1_500);
      await new Promise((resolve) => setTimeout(resolve, 1_700));
      counter.reset();
      expect(await readAll(shortLived, tenant, message)).toBe(1);
      expect(counter.count("readers_by_message")).toBeGreaterThan(0);
    } finally {
      await shortCache.close();
      shortRedis.disconnect();
    }
  });

  it("stays exact while Redis is killed, without hanging, and heals when it is back", async () => {
    tenant = newTenant();
    await redisReady();
    const message = await seedGroup(store, tenant, users("u", 10));
    for (const reader of ["u000001", "u000002", "u000003"]) {
      await store.insertReceipts(tenant, reader, [{ message, readAt: minutes(11) }]);
    }
    expect(await readAll(store, tenant, message)).toBe(3);

    await redisServer.kill();
    const started = Date.now();
    const [recorded] = await store.insertReceipts(tenant, "u000004", [
      { message, readAt: minutes(12) },
    ]);
    expect(recorded).toMatchObject({ inserted: true, readCount: 4 });
    counter.reset();
    expect(await readAll(store, tenant, message)).toBe(4);
    expect(counter.count("readers_by_message")).toBeGreaterThan(0); // served by Cassandra
    expect(Date.now() - started).toBeLessThan(3_000);

    await redisServer.restart();
    await redisReady();
    await store.insertReceipts(tenant, "u000005", [{ message, readAt: minutes(13) }]);
    expect(await readAll(store, tenant, message)).toBe(5);
    counter.reset();
    expect(await readAll(store, tenant, message)).toBe(5);
    expect(counter.count()).toBe(0); // hot again
  });

  it("treats a Redis that stops answering as a miss, then drops the entry it may have missed", async () => {
    tenant = newTenant();
    await redisReady();
    const message = await seedGroup(store, tenant, users("u", 10));
    for (const reader of ["u000001", "u000002", "u000003"]) {
      await store.insertReceipts(tenant, reader, [{ message, readAt: minutes(11) }]);
    }
    expect(await readAll(store, tenant, message)).toBe(3);

    redisServer.pause();
    try {
      const started = Date.now();
      const [recorded] = await store.insertReceipts(tenant, "u000004", [
        { message, readAt: minutes(12) },
      ]);
      expect(recorded).toMatchObject({ inserted: true, readCount: 4 });
      expect(await readAll(store, tenant, message)).toBe(4);
      expect(Date.now() - started).toBeLessThan(3_000); // bounded by the command timeout
    } finally {
      redisServer.resume();
    }
    // Whether or not the paused SADD ran, the entry is not used before it was dropped.
    await redis.srem(entryKey(message), "u000004");
    expect(await readAll(store, tenant, message)).toBe(4);
    // Once a PING answers again (probed every 250 ms), counts come from Redis again, exact.
    await vi.waitFor(
      async () => {
        counter.reset();
        expect(await readAll(store, tenant, message)).toBe(4);
        expect(counter.count()).toBe(0);
      },
      { timeout: 5_000, interval: 100 },
    );
  });

  it("never trusts an entry that a restarted Redis reloaded from a snapshot", async () => {
    tenant = newTenant();
    await redisReady();
    const message = await seedGroup(store, tenant, users("u", 10));
    await store.insertReceipts(tenant, "u000001", [{ message, readAt: minutes(11) }]);
    expect(await readAll(store, tenant, message)).toBe(1);
    await redisServer.save(); // the snapshot holds a complete entry of 1 reader

    await redisServer.kill();
    await store.insertReceipts(tenant, "u000002", [{ message, readAt: minutes(12) }]);
    await redisServer.restart(); // reloads the snapshot: the entry says 1
    await redisReady();
    expect(await redis.exists(entryKey(message))).toBe(1);
    expect(await readAll(store, tenant, message)).toBe(2);
  });

  it("stays exact when Redis is flushed while receipts arrive", async () => {
    tenant = newTenant();
    await redisReady();
    const readers = users("u", 41).slice(1);
    const message = await seedGroup(store, tenant, users("u", 41));
    await Promise.all(
      readers
        .slice(0, 20)
        .map((r) => store.insertReceipts(tenant, r, [{ message, readAt: minutes(11) }])),
    );
    expect(await readAll(store, tenant, message)).toBe(20);

    await Promise.all([
      redisServer.flushAll(),
      ...readers
        .slice(20)
        .map((r) => store.insertReceipts(tenant, r, [{ message, readAt: minutes(12) }])),
      readAll(store, tenant, message),
    ]);
    expect(await readAll(store, tenant, message)).toBe(40);
    expect(await readAll(plain, tenant, message)).toBe(40);
    counter.reset();
    expect(await readAll(store, tenant, message)).toBe(40);
    expect(counter.count()).toBe(0);
  });

  it("counts 200 readers each sending twice at once as exactly 200", async () => {
    tenant = newTenant();
    await redisReady();
    const members = users("u", 201);
    const readers = members.slice(1);
    const message = await seedGroup(store, tenant, members);
    // The entry is cold: rebuilds race with the receipts.
    const recorded = (
      await Promise.all(
        [...readers, ...readers].map((reader, i) =>
          store.insertReceipts(tenant, reader, [{ message, readAt: minutes(11) + i }]),
        ),
      )
    ).flat();
    expect(recorded.filter((r) => r.inserted)).toHaveLength(200);
    expect(Math.max(...recorded.map((r) => r.readCount))).toBe(200);
    expect(recorded.every((r) => r.readCount >= 1 && r.readCount <= 200)).toBe(true);
    expect(await readAll(store, tenant, message)).toBe(200);
    expect(await readAll(plain, tenant, message)).toBe(200);
    expect(await redis.scard(entryKey(message))).toBe(201);
    const listed = await plain.listReaders(tenant, message, undefined, 1_000);
    expect(listed.map((r) => r.userId)).toEqual(readers);
  });

  it("drops the entry when receipts are withdrawn, even during a rebuild", async () => {
    tenant = newTenant();
    await redisReady();
    const service = new MembershipService({ store });
    const message = await seedGroup(store, tenant, users("u", 5));
    for (const reader of ["u000001", "u000002", "u000003"]) {
      await store.insertReceipts(tenant, reader, [{ message, readAt: minutes(11) }]);
    }
    expect(await readAll(store, tenant, message)).toBe(3);
    await redisServer.flushAll();
    // A backdated removal races a rebuild of the entry.
    await Promise.all([
      service.removeMembers(tenant, { groupId: "g", userIds: ["u000002"], leftAt: minutes(5) }),
      readAll(store, tenant, message),
    ]);
    expect(await readAll(store, tenant, message)).toBe(2);
    expect(await readAll(plain, tenant, message)).toBe(2);
  });
});

describe("Cassandra store: what one process keeps in memory", () => {
  let counter: RequestCounter;
  let client: Client;

  beforeAll(() => {
    counter = new RequestCounter();
    client = connectTestClient({ requestTracker: counter });
  });

  afterAll(async () => {
    await client?.shutdown();
  });

  const sender = "u000000";
  const probe = [{ userId: sender, at: minutes(10) }];

  it("reads a tracked message from Cassandra once, and an untracked id every time", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    const message = await seedGroup(store, tenant, users("u", 3));
    expect((await store.getMessages(tenant, [message.messageId])).get(message.messageId)).toEqual(
      message,
    );
    counter.reset();
    const found = await store.getMessages(tenant, [message.messageId, "not-yet-tracked"]);
    expect([...found.values()]).toEqual([message]);
    expect(counter.count("messages")).toBe(1);
    expect(counter.queries.every((q) => q.includes("message_id = ?"))).toBe(true);
  });

  it("knows the messages it tracked itself without reading them back", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    const message = await seedGroup(store, tenant, users("u", 3));
    counter.reset();
    expect((await store.getMessages(tenant, [message.messageId])).get(message.messageId)).toEqual(
      message,
    );
    expect(counter.count("messages")).toBe(0);
  });

  it("shares one read of a message among calls that want it at once, but not a read that missed it", async () => {
    const tenant = newTenant();
    const message = await seedGroup(cassandraStore(keyspace.client), tenant, users("u", 3));
    const store = cassandraStore(client);
    const getAtOnce = (id: string) =>
      Promise.all(Array.from({ length: 20 }, () => store.getMessages(tenant, [id])));
    counter.reset();
    const found = await getAtOnce(message.messageId);
    expect(found.map((m) => m.get(message.messageId))).toEqual(found.map(() => message));
    expect(counter.count("messages")).toBe(1);
    counter.reset();
    const missing = await getAtOnce("not-yet-tracked");
    expect(missing.every((m) => m.size === 0)).toBe(true);
    // Each call that found only a missing answer in flight asked again itself.
    expect(counter.count("messages")).toBeGreaterThan(1);
  });

  it("reads a stored conversation from Cassandra once, and an unknown one every time", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    const c2c: TrackedMessage = {
      conversationId: "c",
      conversationType: "c2c",
      messageId: "m-c2c",
      senderId: "zoe",
      sentAt: minutes(1),
      receiverId: "amy",
    };
    await cassandraStore(keyspace.client).insertMessages(tenant, [c2c]);
    const expected = { conversationId: "c", type: "c2c", participants: ["amy", "zoe"] };
    expect(await store.getConversation(tenant, "c")).toEqual(expected);
    expect(await store.getConversation(tenant, "not-yet")).toBeUndefined();
    counter.reset();
    expect(await store.getConversation(tenant, "c")).toEqual(expected);
    expect(await store.getConversation(tenant, "not-yet")).toBeUndefined();
    expect(counter.count("conversations")).toBe(1);
  });

  it("keeps what was stored first when instances create one conversation differently at once", async () => {
    const tenant = newTenant();
    const stores = [cassandraStore(client), cassandraStore(keyspace.client)];
    const ids = Array.from({ length: 20 }, (_, i) => `race-${i}`);
    // Statements prepared beforehand, so that both instances' writes really meet.
    for (const [s, store] of stores.entries()) {
      await store.insertMessages(tenant, [groupMessage(`warm-${s}`, `warm-${s}`, "zoe", 1)]);
    }
    // Each instance learns the conversation from its own write's answer, not from a read.
    await Promise.all(
      stores.map((store, s) =>
        store.insertMessages(
          tenant,
          ids.map((id) => ({
            ...groupMessage(`${id}-${s}`, id, "zoe", minutes(1)),
            ...(s === 0 ? {} : { conversationType: "c2c" as const, receiverId: "amy" }),
          })),
        ),
      ),
    );
    const fresh = cassandraStore(keyspace.client, { localCacheEntries: 0 });
    for (const id of ids) {
      const stored = await fresh.getConversation(tenant, id);
      expect(stored).toBeDefined();
      for (const store of stores) expect(await store.getConversation(tenant, id)).toEqual(stored);
    }
  });

  it("answers audience sizes from memory with one read of the group's version", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    await seedGroup(store, tenant, users("u", 5));
    const probes = [...probe, { userId: "u000001", at: minutes(11) }];
    const expected = [
      { memberCount: 5, wasMember: true },
      { memberCount: 5, wasMember: true },
    ];
    expect(await store.membershipAt(tenant, "g", probes)).toEqual(expected);
    counter.reset();
    expect(await store.membershipAt(tenant, "g", probes)).toEqual(expected);
    expect(counter.count()).toBe(1);
    expect(counter.count("group_sizes")).toBe(1);
  });

  it("shares one read of the group's version among the calls of one turn, never with a later call", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    await seedGroup(store, tenant, users("u", 5));
    await store.membershipAt(tenant, "g", probe);
    counter.reset();
    const sameTurn = await Promise.all(
      Array.from({ length: 10 }, () => store.membershipAt(tenant, "g", probe)),
    );
    expect(sameTurn).toEqual(sameTurn.map(() => [{ memberCount: 5, wasMember: true }]));
    expect(counter.count("group_sizes")).toBe(1);
    counter.reset();
    const first = store.membershipAt(tenant, "g", probe);
    // The first call's read is sent once this turn's I/O is handled; a call after that reads anew.
    await new Promise((resolve) => setImmediate(resolve));
    const later = store.membershipAt(tenant, "g", probe);
    await Promise.all([first, later]);
    expect(counter.count("group_sizes")).toBe(2);
  });

  it("sees a change acknowledged by another instance in its next call", async () => {
    const tenant = newTenant();
    const mine = cassandraStore(client);
    const other = cassandraStore(keyspace.client);
    await seedGroup(other, tenant, users("u", 5));
    expect(await mine.membershipAt(tenant, "g", probe)).toEqual([
      { memberCount: 5, wasMember: true },
    ]);
    // Backdated: the sender left before its message, so it no longer counts itself.
    await other.closeMemberships(tenant, "g", [sender], minutes(5));
    expect(await mine.membershipAt(tenant, "g", probe)).toEqual([
      { memberCount: 4, wasMember: false },
    ]);
    await other.openMemberships(tenant, "g", ["late-joiner"], minutes(2));
    expect(await mine.membershipAt(tenant, "g", probe)).toEqual([
      { memberCount: 5, wasMember: false },
    ]);
  });

  it("reads through while a membership change holds the group's lock", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    await seedGroup(store, tenant, users("u", 5));
    expect(await store.membershipAt(tenant, "g", probe)).toEqual([
      { memberCount: 5, wasMember: true },
    ]);
    // What a change in progress looks like: the lock taken and one of its rows written.
    const run = (cql: string, params: unknown[]) =>
      keyspace.client.execute(cql, params, { prepare: true });
    await run(
      `UPDATE ${keyspace.keyspace}.group_sizes SET lock_op = ?, lock_since = ? WHERE tenant = ? AND group_id = ?`,
      [types.Uuid.random(), BigInt(Date.now()), tenant, "g"],
    );
    await run(
      `INSERT INTO ${keyspace.keyspace}.group_sizes (tenant, group_id, changed_at, members) VALUES (?, ?, ?, ?)`,
      [tenant, "g", BigInt(minutes(7)), 6],
    );
    expect(await store.membershipAt(tenant, "g", probe)).toEqual([
      { memberCount: 6, wasMember: true },
    ]);
  });

  it("records a call of 10 new receipts with one read, one batch and a write per message, no LWT", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    const first = await seedGroup(store, tenant, users("u", 3));
    const messages = [
      first,
      ...Array.from({ length: 9 }, (_, i) => groupMessage(`m${i}`, "g", sender, minutes(11 + i))),
    ];
    await store.insertMessages(tenant, messages.slice(1));
    const sendAll = (readAt: number) =>
      store.insertReceipts(
        tenant,
        "u000001",
        messages.map((message) => ({ message, readAt })),
      );
    counter.reset();
    const recorded = await sendAll(minutes(30));
    expect(recorded.map((r) => [r.inserted, r.readCount])).toEqual(messages.map(() => [true, 1]));
    expect(counter.requests(/^SELECT .* FROM \S+\.receipts_by_reader/s)).toBe(1);
    expect(counter.batchSizes(/^INSERT INTO \S+\.receipts_by_reader/)).toEqual([10]);
    expect(counter.requests(/^INSERT INTO \S+\.readers_by_message/)).toBe(10);
    expect(counter.queries.filter((q) => /\bIF\b/.test(q))).toEqual([]);
    counter.reset();
    const again = await sendAll(minutes(31));
    expect(again.map((r) => [r.inserted, r.readCount])).toEqual(messages.map(() => [false, 1]));
    expect(counter.requests(/^INSERT INTO \S+\.receipts_by_reader/)).toBe(0);
  });

  it("sends the readers rows of one message that arrive together in shared batches", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    const members = users("u", 61);
    const message = await seedGroup(store, tenant, members);
    counter.reset();
    const recorded = await Promise.all(
      members
        .slice(1)
        .map((reader) => store.insertReceipts(tenant, reader, [{ message, readAt: minutes(20) }])),
    );
    expect(recorded.flat().filter((r) => r.inserted)).toHaveLength(60);
    const writes = /^INSERT INTO \S+\.readers_by_message/;
    const batched = counter.batchSizes(writes);
    expect(batched.length).toBeGreaterThan(0);
    expect(counter.requests(writes)).toBeLessThan(60);
    expect(counter.requests(writes) - batched.length + batched.reduce((a, b) => a + b, 0)).toBe(60);
    expect(await readAll(store, tenant, message)).toBe(60);
  });

  it("keeps nothing in memory when told so", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client, { localCacheEntries: 0 });
    const message = await seedGroup(store, tenant, users("u", 3));
    await store.getMessages(tenant, [message.messageId]);
    await store.membershipAt(tenant, "g", probe);
    counter.reset();
    await store.getMessages(tenant, [message.messageId]);
    await store.membershipAt(tenant, "g", probe);
    expect(counter.count("messages")).toBe(1);
    expect(counter.count("memberships")).toBe(1);
  });
});

describe("Cassandra store: failures and recovery", () => {
  it("fails writes with StoreUnavailableError when Cassandra cannot be reached", async () => {
    const dead = createCassandraClient({
      contactPoints: ["127.0.0.1:1"],
      localDataCenter: cassandraLocalDc,
    });
    const store = cassandraStore(dead);
    const tenant = newTenant();
    const message = groupMessage("m1", "g", "alice", minutes(10));
    try {
      for (const call of [
        () => store.insertMessages(tenant, [message]),
        () => store.insertReceipts(tenant, "bob", [{ message, readAt: minutes(11) }]),
        () => store.openMemberships(tenant, "g", ["bob"], minutes(0)),
        () => store.advanceHorizon(tenant, "g", "bob", minutes(20), minutes(20)),
        () => store.readCounts(tenant, [message]),
        () => store.ping(),
      ]) {
        await expect(call()).rejects.toBeInstanceOf(StoreUnavailableError);
      }
    } finally {
      await dead.shutdown();
    }
  });

  it("fails with StoreUnavailableError while Cassandra is away; the retry afterwards counts once", async () => {
    const proxy = await TcpProxy.start("127.0.0.1", 9042);
    const client = createCassandraClient({
      contactPoints: [proxy.address],
      localDataCenter: cassandraLocalDc,
      reconnectDelayMs: 50,
      readTimeoutMs: 3_000,
    });
    const tenant = newTenant();
    const store = cassandraStore(client);
    const receipts = new ReceiptService({
      store,
      feed: new SqliteChangeFeed(openSqliteDatabase(":memory:"), { retentionMs: 86_400_000 }),
    });
    const membership = new MembershipService({ store });
    try {
      await membership.addMembers(tenant, {
        groupId: "g",
        userIds: users("u", 4),
        joinedAt: minutes(0),
      });
      await receipts.trackMessages(tenant, [
        { ...groupMessage("m1", "g", "u000000", minutes(10)), conversationType: "group" },
      ]);

      proxy.cut();
      await expect(
        receipts.sendReceipts(tenant, {
          conversationId: "g",
          readerId: "u000001",
          messageIds: ["m1"],
        }),
      ).rejects.toBeInstanceOf(StoreUnavailableError);
      proxy.restore();

      let after: Awaited<ReturnType<typeof receipts.getReceipts>> | undefined;
      for (let i = 0; i < 100 && after === undefined; i++) {
        after = await receipts
          .getReceipts(tenant, { conversationId: "g", messageIds: ["m1"] })
          .catch(async () => {
            await new Promise((resolve) => setTimeout(resolve, 50));
            return undefined;
          });
      }
      expect(after?.[0]).toMatchObject({ readCount: 0, unreadCount: 3 });
      // The client retries: the receipt counts once.
      const [sent] = await receipts.sendReceipts(tenant, {
        conversationId: "g",
        readerId: "u000001",
        messageIds: ["m1"],
      });
      expect(sent).toMatchObject({ readCount: 1, unreadCount: 2 });
    } finally {
      await client.shutdown();
      await proxy.close();
    }
  });

  it("completes a receipt whose first attempt stopped right after its record", async () => {
    const tenant = newTenant();
    const store = cassandraStore(keyspace.client);
    const message = await seedGroup(store, tenant, users("u", 3));
    // What a crash between the record and the readers row leaves behind.
    await keyspace.client.execute(
      `INSERT INTO ${keyspace.keyspace}.receipts_by_reader
         (tenant, conversation_id, reader_id, sent_at, message_id, read_at, write_ts)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
      [
        tenant,
        "g",
        "u000001",
        BigInt(message.sentAt),
        message.messageId,
        BigInt(minutes(11)),
        BigInt(Date.now() * 1000),
      ],
      { prepare: true },
    );
    expect(await readAll(store, tenant, message)).toBe(0);
    const [retried] = await store.insertReceipts(tenant, "u000001", [
      { message, readAt: minutes(15) },
    ]);
    expect(retried).toMatchObject({ inserted: false, readCount: 1 });
    expect(await store.listReaders(tenant, message, undefined, 10)).toEqual([
      { userId: "u000001", readAt: minutes(11) },
    ]);
    const [again] = await store.insertReceipts(tenant, "u000001", [
      { message, readAt: minutes(16) },
    ]);
    expect(again).toMatchObject({ inserted: false, readCount: 1 });
  });

  it("leaves a receipt recorded by schema version 1 as it was", async () => {
    const tenant = newTenant();
    const store = cassandraStore(keyspace.client);
    const message = await seedGroup(store, tenant, users("u", 3));
    // Version 1 wrote the record without a read time, in one logged batch with the readers row.
    const ts = BigInt(Date.now() * 1000);
    await keyspace.client.batch(
      [
        {
          query: `INSERT INTO ${keyspace.keyspace}.receipts_by_reader
            (tenant, conversation_id, reader_id, sent_at, message_id, write_ts) VALUES (?, ?, ?, ?, ?, ?)`,
          params: [tenant, "g", "u000001", BigInt(message.sentAt), message.messageId, ts],
        },
        {
          query: `INSERT INTO ${keyspace.keyspace}.readers_by_message (tenant, message_id, reader_id, read_at)
            VALUES (?, ?, ?, ?)`,
          params: [tenant, message.messageId, "u000001", BigInt(minutes(11))],
        },
      ],
      { prepare: true, logged: true },
    );
    const [recorded] = await store.insertReceipts(tenant, "u000001", [
      { message, readAt: minutes(15) },
    ]);
    expect(recorded).toMatchObject({ inserted: false, readCount: 1 });
    expect(await store.listReaders(tenant, message, undefined, 10)).toEqual([
      { userId: "u000001", readAt: minutes(11) },
    ]);
  });

  it("completes a membership change that crashed half way, and fences off one without a plan", async () => {
    const tenant = newTenant();
    const store = cassandraStore(keyspace.client, { membershipLockLeaseMs: 1_000 });
    await store.openMemberships(tenant, "g", ["a", "b", "c"], minutes(0));
    const ks = keyspace.keyspace;
    const run = (cql: string, params: unknown[]) =>
      keyspace.client.execute(cql, params, { prepare: true });

    // A change that wrote its plan and one of its two rows, then died holding the lock.
    const crashed = types.Uuid.random();
    const ts = Date.now() * 1000;
    const plan = {
      kind: "open",
      ts,
      at: minutes(5),
      users: [
        ["d", minutes(5)],
        ["e", minutes(5)],
      ],
      sizes: [[minutes(5), 5]],
    };
    await run(
      `UPDATE ${ks}.group_sizes SET lock_op = ?, lock_since = ? WHERE tenant = ? AND group_id = ? IF lock_op = null`,
      [crashed, BigInt(Date.now() - 60_000), tenant, "g"],
    );
    await run(
      `INSERT INTO ${ks}.membership_changes (tenant, group_id, op_id, aborted, plan) VALUES (?, ?, ?, false, ?)`,
      [tenant, "g", crashed, JSON.stringify(plan)],
    );
    await run(
      `INSERT INTO ${ks}.memberships (tenant, group_id, user_id, joined_at) VALUES (?, ?, ?, ?) USING TIMESTAMP ${ts}`,
      [tenant, "g", "d", BigInt(minutes(5))],
    );
    expect(await store.memberCountAt(tenant, "g", minutes(6))).toBe(5);
    expect(await store.wasMemberAt(tenant, "g", "e", [minutes(6)])).toEqual([true]);

    // A change that died before writing its plan: it is fenced off and the lock freed.
    const planless = types.Uuid.random();
    await run(
      `UPDATE ${ks}.group_sizes SET lock_op = ?, lock_since = ? WHERE tenant = ? AND group_id = ? IF lock_op = null`,
      [planless, BigInt(Date.now() - 60_000), tenant, "g"],
    );
    const started = Date.now();
    await store.openMemberships(tenant, "g", ["f"], minutes(7));
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await store.memberCountAt(tenant, "g", minutes(8))).toBe(6);
    const fence = await run(
      `SELECT aborted FROM ${ks}.membership_changes WHERE tenant = ? AND group_id = ? AND op_id = ?`,
      [tenant, "g", planless],
    );
    expect(fence.first()?.get("aborted")).toBe(true);
  });

  it("keeps the member count exact under backdated and concurrent changes", async () => {
    const tenant = newTenant();
    const store = cassandraStore(keyspace.client);
    await store.openMemberships(tenant, "g", users("a", 10), minutes(10));
    await store.openMemberships(tenant, "g", users("b", 5), minutes(20));
    // Backdated: joins before the other changes, leaves between them.
    await store.openMemberships(tenant, "g", users("c", 3), minutes(5));
    await store.closeMemberships(tenant, "g", users("a", 4), minutes(15));
    // Concurrent changes of one group are serialised by its lock.
    await Promise.all(
      users("d", 8).map((u, i) => store.openMemberships(tenant, "g", [u], minutes(30 + i))),
    );
    const expected: [number, number][] = [
      [minutes(4), 0],
      [minutes(5), 3],
      [minutes(10), 13],
      [minutes(15), 9],
      [minutes(20), 14],
      [minutes(29), 14],
      [minutes(37), 22],
    ];
    for (const [at, count] of expected)
      expect(await store.memberCountAt(tenant, "g", at)).toBe(count);
  });
});

describe("a group of 100,000 members on Cassandra", () => {
  const memberCount = 100_000;
  const readerCount = 1_000;
  let tenant: string;
  let counter: RequestCounter;
  let client: Client;
  let redis: Redis;
  let cache: RedisReadCountCache;
  let store: CassandraReceiptStore;
  let receipts: ReceiptService;
  const members = users("u", memberCount);
  const timings: Record<string, number> = {};

  const timed = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await work();
    } finally {
      timings[name] = Math.round(performance.now() - started);
    }
  };

  beforeAll(async () => {
    tenant = newTenant();
    counter = new RequestCounter();
    client = connectTestClient({ requestTracker: counter });
    redis = connectRedis(sharedRedisUrl);
    cache = new RedisReadCountCache(redis, { keyPrefix: sharedPrefix, ttlMs: 60_000 });
    store = cassandraStore(client, { cache });
    receipts = new ReceiptService({
      store,
      feed: new SqliteChangeFeed(openSqliteDatabase(":memory:"), { retentionMs: 86_400_000 }),
    });
    const membership = new MembershipService({ store });
    await timed("add 100,000 members (100 calls)", async () => {
      for (let i = 0; i < memberCount; i += 1_000) {
        await membership.addMembers(tenant, {
          groupId: "big",
          userIds: members.slice(i, i + 1_000),
          joinedAt: minutes(0),
        });
      }
    });
    await membership.addMembers(tenant, {
      groupId: "small",
      userIds: users("s", 10),
      joinedAt: minutes(0),
    });
  }, 240_000);

  afterAll(async () => {
    console.info("100,000-member group timings (ms):", timings);
    await cache?.close();
    redis?.disconnect();
    await client?.shutdown();
  });

  it("tracks a message with the same requests as in a group of 10", async () => {
    counter.reset();
    await timed("track in 10-member group", () =>
      receipts.trackMessages(tenant, [
        { ...groupMessage("small-1", "small", "s000000", minutes(10)) },
      ]),
    );
    const small = counter.count();
    counter.reset();
    await timed("track in 100,000-member group", () =>
      receipts.trackMessages(tenant, [{ ...groupMessage("big-1", "big", "u000000", minutes(10)) }]),
    );
    expect(counter.count()).toBe(small);
    expect(counter.count("memberships")).toBe(0);
  });

  it("counts the audience with one read of the group's size", async () => {
    counter.reset();
    const [receipt] = await timed("GetReceipts, cold", () =>
      receipts.getReceipts(tenant, { conversationId: "big", messageIds: ["big-1"] }),
    );
    expect(receipt).toMatchObject({ readCount: 0, unreadCount: memberCount - 1 });
    // The group's version, then its size at sent_at; and the sender's own intervals.
    expect(counter.count("group_sizes")).toBe(2);
    expect(counter.count("memberships")).toBe(1);
    counter.reset();
    const [again] = await timed("GetReceipts, hot", () =>
      receipts.getReceipts(tenant, { conversationId: "big", messageIds: ["big-1"] }),
    );
    expect(again).toEqual(receipt);
    // Remembered at the group's version: only the version is read again.
    expect(counter.count("group_sizes")).toBe(1);
    expect(counter.count("memberships")).toBe(0);
  });

  it("pages READ and UNREAD members both ways, each member exactly once", async () => {
    const readers = members.filter((_, i) => i % 100 === 7); // 1,000 readers spread over the ids
    expect(readers).toHaveLength(readerCount);
    await timed("1,000 readers send receipts", async () => {
      for (let i = 0; i < readers.length; i += 50) {
        await Promise.all(
          readers.slice(i, i + 50).map((readerId) =>
            receipts.sendReceipts(tenant, {
              conversationId: "big",
              readerId,
              messageIds: ["big-1"],
            }),
          ),
        );
      }
    });
    const [receipt] = await receipts.getReceipts(tenant, {
      conversationId: "big",
      messageIds: ["big-1"],
    });
    expect(receipt).toMatchObject({
      readCount: readerCount,
      unreadCount: memberCount - 1 - readerCount,
    });

    const message = (await store.getMessages(tenant, ["big-1"])).get("big-1") as TrackedMessage;
    await redis.del(`${sharedPrefix}rc:{${encodeURIComponent(tenant)}/big-1}:set`);
    counter.reset();
    const cold = await timed("count 1,000 readers, cold (rebuilt from Cassandra)", () =>
      store.readCounts(tenant, [message]),
    );
    expect(counter.count("readers_by_message")).toBeGreaterThan(0);
    counter.reset();
    const hot = await timed("count 1,000 readers, hot (Redis)", () =>
      store.readCounts(tenant, [message]),
    );
    expect(counter.count()).toBe(0);
    expect([cold.get("big-1"), hot.get("big-1")]).toEqual([readerCount, readerCount]);

    const listAll = async (filter: "read" | "unread", pageSize: number) => {
      const all: ReadMember[] = [];
      let pageToken = "";
      do {
        const page = await receipts.listReadMembers(tenant, {
          conversationId: "big",
          messageId: "big-1",
          filter,
          pageSize,
          pageToken,
        });
        all.push(...page.items);
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      return all.map((m) => m.userId);
    };
    const read = await timed("list READ (pages of 300)", () => listAll("read", 300));
    const unread = await timed("list UNREAD (pages of 1,000)", () => listAll("unread", 1_000));
    expect(read).toEqual(readers);
    expect(unread).toHaveLength(memberCount - 1 - readerCount);
    expect(new Set([...read, ...unread]).size).toBe(memberCount - 1);
    expect(unread).toEqual([...unread].sort());
    expect(unread.includes("u000000")).toBe(false); // the sender
  }, 120_000);
});

describe("the service on Cassandra + Redis, over the network", () => {
  it("serves every write and count through RECEIPTS_STORE=cassandra", async () => {
    const server = await startTestServer({
      RECEIPTS_STORE: "cassandra",
      RECEIPTS_CASSANDRA_KEYSPACE: keyspace.keyspace,
      RECEIPTS_CHANGE_FEED: "embedded",
      RECEIPTS_REDIS_KEY_PREFIX: sharedPrefix,
    });
    try {
      const transport = createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" });
      const receipts = createClient(ReadReceiptService, transport);
      const membership = createClient(MembershipRpc, transport);
      const groupId = `g-${randomUUID()}`;
      await membership.addMembers({
        groupId,
        userIds: ["alice", "bob", "carol"],
        joinedAt: timestampFromMs(minutes(0)),
      });
      await receipts.trackMessages({
        messages: [
          create(TrackedMessageSchema, {
            conversationId: groupId,
            conversationType: ConversationType.GROUP,
            messageId: `${groupId}-m1`,
            senderId: "alice",
            sentAt: timestampFromMs(minutes(10)),
          }),
        ],
      });
      const sent = await receipts.sendReceipts({
        conversationId: groupId,
        readerId: "bob",
        messageIds: [`${groupId}-m1`],
      });
      expect(sent.receipts[0]).toMatchObject({ readCount: 1, unreadCount: 1 });
      const got = await receipts.getReceipts({
        conversationId: groupId,
        messageIds: [`${groupId}-m1`],
      });
      expect(got.receipts[0]).toMatchObject({ readCount: 1, unreadCount: 1 });
      // Counts are served from the Redis entry the receipt kept up to date, and operators see it.
      await receipts.getReceipts({ conversationId: groupId, messageIds: [`${groupId}-m1`] });
      const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
      const lookups = (result: string) =>
        Number(
          new RegExp(
            `receipts_cache_lookups_total\\{cache="read_counts",result="${result}"\\} (\\d+)`,
          ).exec(metrics)?.[1],
        );
      expect(lookups("hit")).toBeGreaterThanOrEqual(1);
      expect(lookups("miss")).toBeGreaterThanOrEqual(0);
      const missing = await receipts
        .getReceipts({ conversationId: groupId, messageIds: ["nope"] })
        .catch((error: unknown) => ConnectError.from(error));
      expect(missing).toMatchObject({ code: Code.NotFound });
    } finally {
      await server.stop();
    }
  });
});

describe("Cassandra schema and configuration", () => {
  it("applies the versioned CQL files once: a second start changes nothing", async () => {
    const files = loadSchemaFiles();
    expect(files.map((f) => f.version)).toEqual(files.map((_, i) => i + 1));
    expect(files.every((f) => f.statements.every((s) => s.includes("IF NOT EXISTS")))).toBe(true);
    const version = await applyCassandraSchema(keyspace.client, {
      keyspace: keyspace.keyspace,
      replication: testReplication,
    });
    expect(version).toBe(files.length);
    const rows = await keyspace.client.execute(
      `SELECT version FROM ${keyspace.keyspace}.schema_version`,
    );
    expect(rows.rows.map((r) => r.get("version") as number).sort()).toEqual(
      files.map((f) => f.version),
    );
  });

  it("reads every RECEIPTS_CASSANDRA_* variable and reports each bad one", () => {
    const config = loadConfig({
      RECEIPTS_STORE: "cassandra",
      RECEIPTS_CASSANDRA_CONTACT_POINTS: "10.0.0.1:9042, 10.0.0.2",
      RECEIPTS_CASSANDRA_LOCAL_DC: "eu-west",
      RECEIPTS_CASSANDRA_KEYSPACE: "receipts_prod",
      RECEIPTS_CASSANDRA_REPLICATION: "{'class': 'NetworkTopologyStrategy', 'eu-west': 3}",
      RECEIPTS_CASSANDRA_CONSISTENCY: "QUORUM",
      RECEIPTS_CASSANDRA_LOCAL_CACHE_ENTRIES: "5000",
      RECEIPTS_REDIS_CACHE_TTL_SECONDS: "60",
    });
    expect(config.store).toBe("cassandra");
    expect(config.cassandra).toEqual({
      contactPoints: ["10.0.0.1:9042", "10.0.0.2"],
      localDataCenter: "eu-west",
      keyspace: "receipts_prod",
      replication: "{'class': 'NetworkTopologyStrategy', 'eu-west': 3}",
      consistency: "QUORUM",
      serialConsistency: "LOCAL_SERIAL",
      cacheTtlMs: 60_000,
      localCacheEntries: 5_000,
    });
    expect(loadConfig({}).cassandra.localCacheEntries).toBe(50_000);
    let error: unknown;
    try {
      loadConfig({
        RECEIPTS_STORE: "cassandra",
        RECEIPTS_CASSANDRA_KEYSPACE: "Bad-Name",
        RECEIPTS_CASSANDRA_REPLICATION: "{'class': 'SimpleStrategy'}; DROP KEYSPACE x",
        RECEIPTS_CASSANDRA_CONSISTENCY: "TWO",
        RECEIPTS_CASSANDRA_CONTACT_POINTS: "a b",
        RECEIPTS_CASSANDRA_LOCAL_CACHE_ENTRIES: "-1",
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join("\n");
    for (const name of [
      "KEYSPACE",
      "REPLICATION",
      "CONSISTENCY",
      "CONTACT_POINTS",
      "LOCAL_CACHE_ENTRIES",
    ]) {
      expect(problems).toContain(`RECEIPTS_CASSANDRA_${name}=`);
    }
  });
});
