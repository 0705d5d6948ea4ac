import { afterAll, describe, expect, it, vi } from "vitest";
import { connectRedis } from "../src/store/redis/redis-connection.js";
import { RedisReadCountCache } from "../src/store/redis/redis-read-count-cache.js";
import { deleteKeys, sharedRedisUrl, uniquePrefix } from "./support/shared-redis.js";
import { TcpProxy } from "./support/tcp-proxy.js";

/**
 * Two service instances share the cache. When one instance's update of an entry fails (its
 * master died mid-command: the reader may or may not be in the set), the other must not go on
 * serving that entry: the failing instance drops it as soon as Redis answers again, without
 * waiting for a call of its own on that message (seen in the cluster tier: after a Redis master
 * was killed, one instance answered 17 readers where Cassandra held 18). The same holds when
 * the update was never sent, the instance being cut off from Redis.
 */
/** The store's readers of a message: whoever is in `stored` when it is read. */
const readersOf = (stored: readonly string[]) => () =>
  (async function* () {
    yield [...stored];
  })();

/** A connection to the shared Redis through a proxy that the test can cut. */
async function connectThroughProxy() {
  const shared = new URL(sharedRedisUrl);
  const proxy = await TcpProxy.start(shared.hostname, Number(shared.port || 6379));
  return { proxy, redis: connectRedis(`redis://${proxy.address}`) };
}

describe("the Redis read-count cache shared by two instances", () => {
  const prefix = uniquePrefix("rc-peers");
  const [redisA, redisB] = [connectRedis(sharedRedisUrl), connectRedis(sharedRedisUrl)];
  const a = new RedisReadCountCache(redisA, { keyPrefix: prefix, ttlMs: 600_000 });
  const b = new RedisReadCountCache(redisB, { keyPrefix: prefix, ttlMs: 600_000 });
  afterAll(async () => {
    await Promise.all([a.close(), b.close()]);
    redisA.disconnect();
    redisB.disconnect();
    await deleteKeys(prefix);
  });

  it("an update that failed on one instance stops the other serving the entry, unasked", async () => {
    const stored = ["r1", "r2"];
    const readers = readersOf(stored);
    await vi.waitFor(() => expect(redisA.status).toBe("ready"));
    await vi.waitFor(() => expect(redisB.status).toBe("ready"));
    expect((await b.readCounts("t", ["m"], () => readers)).get("m")).toBe(2); // built by B
    // A stores r3, and its command to Redis fails without an answer (the reader is not added).
    stored.push("r3");
    // Its first attempts to drop the entry fail too: the master is still gone.
    type Script = (...args: unknown[]) => Promise<number>;
    const scripts = redisA as unknown as { rrAdd: Script; rrDrop: Script };
    const { rrAdd, rrDrop } = scripts;
    const lost = () => Promise.reject(new Error("Connection is closed."));
    scripts.rrAdd = lost;
    scripts.rrDrop = lost;
    try {
      expect(await a.readerRecorded("t", "m", "r3", readers)).toBeUndefined();
      await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      scripts.rrAdd = rrAdd;
      scripts.rrDrop = rrDrop;
    }
    // A is never asked about m again; B must come to count r3 by itself.
    await vi.waitFor(
      async () => expect((await b.readCounts("t", ["m"], () => readers)).get("m")).toBe(3),
      { timeout: 5_000, interval: 100 },
    );
  }, 15_000);

  it("a reader recorded while one instance cannot reach Redis is counted by the other once it can", async () => {
    const { proxy, redis: redisC } = await connectThroughProxy();
    const c = new RedisReadCountCache(redisC, { keyPrefix: prefix, ttlMs: 600_000 });
    try {
      const stored = ["r1", "r2"];
      const readers = readersOf(stored);
      await vi.waitFor(() => expect(redisC.status).toBe("ready"));
      expect((await b.readCounts("t", ["m-away"], () => readers)).get("m-away")).toBe(2);
      // C loses Redis, then stores r3: it cannot add the reader, so the entry B built is short.
      proxy.cut();
      await vi.waitFor(() => expect(redisC.status).not.toBe("ready"));
      stored.push("r3");
      expect(await c.readerRecorded("t", "m-away", "r3", readers)).toBeUndefined();
      proxy.restore();
      // B is not told; C must see to it that the short entry stops being served.
      await vi.waitFor(
        async () =>
          expect((await b.readCounts("t", ["m-away"], () => readers)).get("m-away")).toBe(3),
        { timeout: 5_000, interval: 100 },
      );
    } finally {
      await c.close();
      redisC.disconnect();
      await proxy.close();
    }
  }, 15_000);

  it("more readers skipped than it may remember: every entry of the service is dropped, and no other", async () => {
    const { proxy, redis: redisC } = await connectThroughProxy();
    // A prefix with a glob character, and another service's that it would match as a pattern.
    const [ownPrefix, otherPrefix] = [`${prefix}?:`, `${prefix}X:`];
    const c = new RedisReadCountCache(redisC, {
      keyPrefix: ownPrefix,
      ttlMs: 600_000,
      maxSuspectEntries: 2,
    });
    const peer = new RedisReadCountCache(redisB, { keyPrefix: ownPrefix, ttlMs: 600_000 });
    const other = new RedisReadCountCache(redisB, { keyPrefix: otherPrefix, ttlMs: 600_000 });
    const ids = ["m-many-1", "m-many-2", "m-many-3"];
    try {
      const stored = ["r1"];
      const readers = readersOf(stored);
      await vi.waitFor(() => expect(redisC.status).toBe("ready"));
      expect([...(await peer.readCounts("t", ids, () => readers)).values()]).toEqual([1, 1, 1]);
      expect((await other.readCounts("t", ["m-other"], () => readers)).get("m-other")).toBe(1);
      expect((await peer.readCounts("t", ["m-unread"], () => readers)).get("m-unread")).toBe(1);
      const unreadEntry = `${ownPrefix}rc:{t/m-unread}:set`;
      expect(await redisB.exists(unreadEntry)).toBe(1);
      proxy.cut();
      await vi.waitFor(() => expect(redisC.status).not.toBe("ready"));
      stored.push("r2");
      for (const id of ids) expect(await c.readerRecorded("t", id, "r2", readers)).toBeUndefined();
      proxy.restore();
      await vi.waitFor(
        async () =>
          expect([...(await peer.readCounts("t", ids, () => readers)).values()]).toEqual([2, 2, 2]),
        { timeout: 5_000, interval: 100 },
      );
      // Past the cap C dropped every entry of its prefix, even those of messages no one read.
      expect(await redisB.exists(unreadEntry)).toBe(0);
      // The other service's entry was not dropped: still the count it was built with.
      expect((await other.readCounts("t", ["m-other"], () => readers)).get("m-other")).toBe(1);
    } finally {
      await Promise.all([c.close(), peer.close(), other.close()]);
      redisC.disconnect();
      await proxy.close();
    }
  }, 15_000);
});
