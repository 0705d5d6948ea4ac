/**
 * Redis memory per hot message (read-count cache entry) and per change-log entry, for the
 * capacity model (docs/capacity.md).
 *
 *   npm run build && node scripts/measure-redis-memory.ts [messages=2000] [readers=20]
 *
 * Builds `messages` cache entries of `readers` readers each through the service's own
 * RedisReadCountCache, publishes one receipt change per (message, reader) through its
 * RedisChangeFeed, and divides what `MEMORY USAGE` reports for the keys under a fresh prefix
 * (then deleted). Runs directly on Node 24 (type stripping); the service is imported from dist/.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Redis } from "ioredis";

const root = join(import.meta.dirname, "..");
const fromDist = async <T>(path: string): Promise<T> =>
  (await import(pathToFileURL(join(root, "dist", path)).href)) as T;
const { RedisReadCountCache } = await fromDist<
  typeof import("../src/store/redis/redis-read-count-cache.js")
>("src/store/redis/redis-read-count-cache.js");
const { RedisChangeFeed } = await fromDist<
  typeof import("../src/store/redis/redis-change-feed.js")
>("src/store/redis/redis-change-feed.js");
const { silentLogger } = await fromDist<typeof import("../src/logger.js")>("src/logger.js");
const { connectRedis } = await fromDist<typeof import("../src/store/redis/redis-connection.js")>(
  "src/store/redis/redis-connection.js",
);

const messages = Number(process.argv[2] ?? 2_000);
const readers = Number(process.argv[3] ?? 20);
const url = process.env.RECEIPTS_REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `measure-${randomBytes(4).toString("hex")}:`;
const tenant = "acme";
const redis = new Redis(url);

/** Bytes `MEMORY USAGE` gives for every key under `match`. */
async function bytesUnder(match: string): Promise<{ keys: number; bytes: number }> {
  let keys = 0;
  let bytes = 0;
  let cursor = "0";
  do {
    const [next, found] = await redis.scan(cursor, "MATCH", match, "COUNT", 1000);
    cursor = next;
    for (const key of found) {
      keys += 1;
      bytes += Number(await redis.memory("USAGE", key, "SAMPLES", "0"));
    }
  } while (cursor !== "0");
  return { keys, bytes };
}

const ids = Array.from(
  { length: messages },
  (_, i) => `msg-${randomBytes(8).toString("hex")}-${i}`,
);
const readerIds = Array.from(
  { length: readers },
  (_, i) => `user-${randomBytes(6).toString("hex")}-${i}`,
);

const cacheConnection = connectRedis(url);
await new Promise((resolve) => cacheConnection.once("ready", resolve));
const cache = new RedisReadCountCache(cacheConnection, {
  keyPrefix: `${prefix}cache:`,
  ttlMs: 3_600_000,
});
const source = () =>
  (async function* () {
    yield readerIds;
  })();
for (let i = 0; i < ids.length; i += 100) {
  await cache.readCounts(tenant, ids.slice(i, i + 100), () => source);
}
const cacheBytes = await bytesUnder(`${prefix}cache:*`);

const feed = await RedisChangeFeed.open({
  url,
  keyPrefix: `${prefix}feed:`,
  retentionMs: 3_600_000,
  logger: silentLogger,
});
let changes = 0;
for (const messageId of ids) {
  const batch = readerIds.map((readerId, n) => ({
    kind: "receipt" as const,
    receipt: {
      message: {
        conversationId: "team-conversation",
        conversationType: "group" as const,
        messageId,
        senderId: "sender-0001",
        sentAt: Date.now(),
        receiverId: "",
      },
      readCount: n + 1,
      unreadCount: readers - n - 1,
      receiverRead: false,
    },
    readerId,
    readAt: Date.now(),
  }));
  await feed.publish(tenant, batch);
  changes += batch.length;
}
const feedBytes = await bytesUnder(`${prefix}feed:*`);
await feed.close();
await cache.close();

console.log(
  JSON.stringify(
    {
      messages,
      readersPerMessage: readers,
      cache: { ...cacheBytes, bytesPerHotMessage: Math.round(cacheBytes.bytes / messages) },
      changeLog: { ...feedBytes, changes, bytesPerChange: Math.round(feedBytes.bytes / changes) },
    },
    null,
    2,
  ),
);
let cursor = "0";
do {
  const [next, found] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
  cursor = next;
  if (found.length > 0) await redis.del(...found);
} while (cursor !== "0");
redis.disconnect();
