import { randomUUID } from "node:crypto";
import { Cluster } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import type { ReceiptChange } from "../src/domain/model.js";
import { RedisRateLimiter } from "../src/limits/redis-rate-limiter.js";
import { silentLogger } from "../src/logger.js";
import { CassandraReceiptStore } from "../src/store/cassandra/cassandra-receipt-store.js";
import { RedisChangeFeed } from "../src/store/redis/redis-change-feed.js";
import {
  connectRedis,
  type RedisClient,
  unlinkMatching,
} from "../src/store/redis/redis-connection.js";
import { RedisReadCountCache } from "../src/store/redis/redis-read-count-cache.js";
import { RedisWebhookState } from "../src/store/redis/redis-webhook-state.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "../src/store/sqlite/sqlite-receipt-store.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";
import { describeReceiptContract } from "./store-contract.js";
import { bothStarted } from "./support/both-started.js";
import { cassandraCacheBackend } from "./support/cassandra-cache-backend.js";
import { createTestKeyspace } from "./support/cassandra-test-keyspace.js";
import { groupMessage, minutes, users } from "./support/fixtures.js";
import { RedisClusterProcesses } from "./support/redis-cluster.js";
import { describeWatchContract } from "./watch-contract.js";
import { describeWebhookState, untilAnswering } from "./webhook-state-contract.js";

/** The change feed and the read-count cache on a real Redis Cluster of this file's own. */
const hour = 3_600_000;
let cluster: RedisClusterProcesses;
let keyspace: Awaited<ReturnType<typeof createTestKeyspace>>;

beforeAll(async () => {
  await bothStarted(RedisClusterProcesses.start(), createTestKeyspace(), (c, k) => {
    if (c !== undefined) cluster = c;
    if (k !== undefined) keyspace = k;
  });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
  await keyspace?.drop();
});

const openFeed = (clock?: () => number) =>
  RedisChangeFeed.open({
    url: "redis://",
    clusterNodes: cluster.nodes.split(","),
    keyPrefix: "watch:",
    retentionMs: hour,
    logger: silentLogger,
    clock,
  });

describeWebhookState("Redis on a Redis Cluster", async () => {
  const state = RedisWebhookState.open({
    endpoint: { url: "redis://", clusterNodes: cluster.nodes.split(",") },
    keyPrefix: `webhooks-${randomUUID()}:`,
  });
  await untilAnswering(state);
  return state;
});

describeWatchContract("the Redis feed on a Redis Cluster", async () => {
  const db = openSqliteDatabase(":memory:");
  const feed = await openFeed();
  return {
    store: new SqliteReceiptStore(db, new SqliteWriteBatcher(db)),
    feed,
    aheadPosition: `${Date.now() + 365 * 24 * hour}-0`,
    async expire(tenant) {
      // Another instance whose clock is a day ahead trims the log as it appends.
      const later = await openFeed(() => Date.now() + 24 * hour);
      await later.publish(tenant, [horizon("elsewhere", 0)]);
      await later.close();
    },
    async close() {
      await feed.close();
      db.close();
    },
  };
});

const connectCluster = () =>
  connectRedis({ url: "redis://", clusterNodes: cluster.nodes.split(",") });

describeReceiptContract("Cassandra + Redis Cluster", async () => {
  const redis = connectCluster();
  await ready(redis);
  return cassandraCacheBackend(keyspace.client, keyspace.keyspace, redis, "contract:");
});

describe("the read-count cache on a Redis Cluster", () => {
  it("spreads its entries over every master and counts from all of them in one lookup", async () => {
    const redis = connectCluster();
    let hits = 0;
    const cache = new RedisReadCountCache(redis, {
      keyPrefix: "spread:",
      ttlMs: 60_000,
      onLookup: (hit) => {
        hits += hit;
      },
    });
    const store = new CassandraReceiptStore(keyspace.client, {
      keyspace: keyspace.keyspace,
      cache,
      // Only Redis may answer a count here, not this process's memory.
      localCacheEntries: 0,
    });
    try {
      await ready(redis);
      const tenant = `t-${randomUUID()}`;
      const members = users("u", 4);
      await store.openMemberships(tenant, "g", members, minutes(0));
      const messages = Array.from({ length: 24 }, (_, i) => ({
        ...groupMessage(`m-${i}`, "g", members[0] as string, minutes(10)),
        conversationType: "group" as const,
        sentAt: minutes(10),
      }));
      await store.insertMessages(tenant, messages);
      for (const reader of members.slice(1, 3)) {
        await store.insertReceipts(
          tenant,
          reader,
          messages.map((message) => ({ message, readAt: minutes(11) })),
        );
      }
      expect([...(await store.readCounts(tenant, messages)).values()]).toEqual(
        messages.map(() => 2),
      );
      // Built by that lookup; the next one is answered by Redis alone, every entry a hit.
      hits = 0;
      expect([...(await store.readCounts(tenant, messages)).values()]).toEqual(
        messages.map(() => 2),
      );
      expect(hits).toBe(messages.length);

      // Every master holds some of the entries: one lookup spanned all three.
      const holders = new Set<number>();
      for (const message of messages) {
        const key = `spread:rc:{${encodeURIComponent(tenant)}/${message.messageId}}:set`;
        expect(await redis.scard(key)).toBe(3); // two readers and the sentinel
        holders.add(await cluster.masterOf(key));
      }
      expect(holders.size).toBe(3);
    } finally {
      await cache.close();
      redis.disconnect();
    }
  });
});

describe("dropping every key of a prefix on a Redis Cluster", () => {
  it("reaches the keys on every master and leaves those of other prefixes", async () => {
    const redis = connectCluster();
    try {
      await ready(redis);
      const keys = Array.from({ length: 30 }, (_, i) => `flush:rc:{m-${i}}:set`);
      await Promise.all([...keys, "kept:rc:{m-0}:set"].map((key) => redis.set(key, "1")));
      const masters = new Set(await Promise.all(keys.map((key) => cluster.masterOf(key))));
      expect(masters.size).toBe(3);
      await unlinkMatching(redis, "flush:rc:*");
      const left = await Promise.all(keys.map((key) => redis.exists(key)));
      expect(left.filter((n) => n > 0)).toEqual([]);
      expect(await redis.exists("kept:rc:{m-0}:set")).toBe(1);
    } finally {
      redis.disconnect();
    }
  });
});

describe("the rate limiter on a Redis Cluster", () => {
  it("takes from a tenant's bucket and its user's bucket in one script, and refuses when empty", async () => {
    const redis = connectCluster();
    const limiter = new RedisRateLimiter(redis, { keyPrefix: "rate:" });
    try {
      await ready(redis);
      const tenant = `t-${randomUUID()}`;
      // A CROSSSLOT error would let every call through (fail open): the refusal proves the
      // two keys met in one slot. Tenants land on different masters.
      const decisions = [];
      for (const user of ["a", "a", "a", "b"]) {
        decisions.push(
          await limiter.take([
            { key: `{${tenant}}`, ratePerSecond: 0.001, burst: 3 },
            { key: `{${tenant}}/u/${user}`, ratePerSecond: 0.001, burst: 2 },
          ]),
        );
      }
      expect(decisions.map((decision) => decision.allowed)).toEqual([true, true, false, true]);
      expect(await redis.exists(`rate:{${tenant}}`, `rate:{${tenant}}/u/a`)).toBe(2);
    } finally {
      await limiter.close();
    }
  });
});

describe("RECEIPTS_REDIS_CLUSTER_NODES", () => {
  it("takes host:port nodes and names the variable for anything else", () => {
    expect(
      loadConfig({ RECEIPTS_REDIS_CLUSTER_NODES: "10.0.0.5:6379, redis-2:7000,[::1]:7001" })
        .redisClusterNodes,
    ).toEqual(["10.0.0.5:6379", "redis-2:7000", "[::1]:7001"]);
    expect(loadConfig({}).redisClusterNodes).toEqual([]);
    for (const bad of ["10.0.0.5", "redis://10.0.0.5:6379", "host:0", "host:65536", "a b:1"]) {
      expect(() => loadConfig({ RECEIPTS_REDIS_CLUSTER_NODES: bad }), bad).toThrow(
        `RECEIPTS_REDIS_CLUSTER_NODES: ${bad} is not a host:port`,
      );
    }
  });
});

async function ready(redis: RedisClient): Promise<void> {
  expect(redis).toBeInstanceOf(Cluster);
  for (let i = 0; i < 400 && redis.status !== "ready"; i++) {
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  expect(redis.status).toBe("ready");
}

const horizon = (conversationId: string, readUpTo: number): ReceiptChange => ({
  kind: "horizon",
  conversationId,
  readerId: "r",
  readUpTo,
});
