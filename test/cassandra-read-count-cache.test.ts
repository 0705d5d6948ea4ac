import type { Client } from "cassandra-driver";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { serviceCaller } from "../src/domain/caller.js";
import { MembershipService } from "../src/domain/membership-service.js";
import type { TrackedMessage } from "../src/domain/model.js";
import type { CassandraReceiptStore } from "../src/store/cassandra/cassandra-receipt-store.js";
import { connectRedis } from "../src/store/redis/redis-connection.js";
import { RedisReadCountCache } from "../src/store/redis/redis-read-count-cache.js";
import {
  cassandraStore,
  keyspace,
  newTenant,
  readAll,
  seedGroup,
  useCassandraKeyspace,
} from "./support/cassandra-store-fixtures.js";
import { connectTestClient, RequestCounter } from "./support/cassandra-test-keyspace.js";
import { minutes, users } from "./support/fixtures.js";
import { RedisServerProcess } from "./support/redis-server.js";

/** The receipt ledger's read counts with the Redis cache in front: hot, cold, expired, and Redis failing. */
useCassandraKeyspace();

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

  it("settles a receipt whose writer died after storing it and before counting it", async () => {
    tenant = newTenant();
    const message = await seedGroup(store, tenant, users("u", 6));
    for (const reader of ["u000001", "u000002", "u000003"]) {
      await store.insertReceipts(tenant, reader, [{ message, readAt: minutes(11) }]);
    }
    expect(await readAll(store, tenant, message)).toBe(3); // hot
    // An instance without the cache's update stands for one killed between its Cassandra
    // writes and its Redis update: the receipt is stored, its pending change kept.
    await plain.insertReceipts(tenant, "u000004", [{ message, readAt: minutes(12) }]);
    expect(await readAll(plain, tenant, message)).toBe(4);
    expect(await readAll(store, tenant, message)).toBe(3); // the premise: the entry missed it

    // The outbox's sweep takes the pending change over and settles it first.
    expect(
      await store.settleReceipts(tenant, "u000004", [message.messageId, "never-read"]),
    ).toEqual(new Set([message.messageId]));
    expect(await readAll(store, tenant, message)).toBe(4);
    // A receipt that is not stored is not counted by settling it.
    expect(await store.settleReceipts(tenant, "u000005", [message.messageId])).toEqual(new Set());
    expect(await readAll(store, tenant, message)).toBe(4);
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

  /** A message of a new tenant whose entry of 1 reader is in a Redis snapshot. */
  const snapshotOfOneReader = async () => {
    tenant = newTenant();
    await redisReady();
    const message = await seedGroup(store, tenant, users("u", 10));
    await store.insertReceipts(tenant, "u000001", [{ message, readAt: minutes(11) }]);
    expect(await readAll(store, tenant, message)).toBe(1);
    await redisServer.save();
    return message;
  };

  it("never trusts an entry that a restarted Redis reloaded from a snapshot", async () => {
    const message = await snapshotOfOneReader();
    // Added to the live entry after the snapshot: nothing was skipped, nothing is suspect.
    await store.insertReceipts(tenant, "u000002", [{ message, readAt: minutes(12) }]);
    expect(await readAll(store, tenant, message)).toBe(2);

    await redisServer.kill();
    await redisServer.restart(); // reloads the snapshot: the entry says 1
    await redisReady();
    expect(await redis.exists(entryKey(message))).toBe(1);
    expect(await readAll(store, tenant, message)).toBe(2);
  });

  it("drops an entry whose reader it skipped while Redis was down, once Redis is back", async () => {
    const message = await snapshotOfOneReader();

    await redisServer.kill();
    await store.insertReceipts(tenant, "u000002", [{ message, readAt: minutes(12) }]);
    await redisServer.restart(); // reloads the snapshot: the entry says 1
    await redisReady();
    // The skipped add left the entry suspect: it is dropped, not only distrusted here.
    await vi.waitFor(async () => expect(await redis.exists(entryKey(message))).toBe(0), {
      timeout: 5_000,
      interval: 50,
    });
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
      service.removeMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: ["u000002"],
        leftAt: minutes(5),
      }),
      readAll(store, tenant, message),
    ]);
    expect(await readAll(store, tenant, message)).toBe(2);
    expect(await readAll(plain, tenant, message)).toBe(2);
  });
});
