import { Redis } from "ioredis";

/** The shared Redis of the test machine: tests keep to their own key prefix there, never flush it. */
export const sharedRedisUrl = process.env.RECEIPTS_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** A key prefix no other test uses. */
export const uniquePrefix = (name: string): string =>
  `test:${name}:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}:`;

/** Deletes every key under `prefix` (SCAN, never FLUSHDB: the Redis is shared). */
export async function deleteKeys(prefix: string, url = sharedRedisUrl): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    for await (const keys of redis.scanStream({ match: `${prefix}*`, count: 500 })) {
      if ((keys as string[]).length > 0) await redis.unlink(...(keys as string[]));
    }
  } finally {
    redis.disconnect();
  }
}
