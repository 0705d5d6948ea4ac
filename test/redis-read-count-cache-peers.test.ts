import { afterAll, describe, expect, it, vi } from "vitest";
import { connectRedis } from "../src/store/redis/redis-connection.js";
import { RedisReadCountCache } from "../src/store/redis/redis-read-count-cache.js";
import { deleteKeys, sharedRedisUrl, uniquePrefix } from "./support/shared-redis.js";

/**
 * Two service instances share the cache. When one instance's update of an entry fails (its
 * master died mid-command: the reader may or may not be in the set), the other must not go on
 * serving that entry: the failing instance drops it as soon as Redis answers again, without
 * waiting for a call of its own on that message (seen in the cluster tier: after a Redis master
 * was killed, one instance answered 17 readers where Cassandra held 18).
 */
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
    const readers = () =>
      (async function* () {
        yield [...stored];
      })();
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
});
