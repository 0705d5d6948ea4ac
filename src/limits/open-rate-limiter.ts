import { once } from "node:events";
import type { Logger } from "../logger.js";
import { connectRedis } from "../store/redis/redis-connection.js";
import { InProcessRateLimiter } from "./in-process-rate-limiter.js";
import type { RateLimiter } from "./rate-limiter.js";
import { RedisRateLimiter } from "./redis-rate-limiter.js";

export interface RateLimiterOptions {
  readonly kind: "embedded" | "redis";
  readonly redisUrl: string;
  /** Set for a Redis Cluster: see RedisEndpoint. */
  readonly redisClusterNodes?: readonly string[];
  /** Bucket keys start with it, e.g. `receipts:rate:`. */
  readonly keyPrefix: string;
}

/**
 * In-process buckets for one instance, or Redis buckets shared by all of them. Waits up to
 * `readyTimeoutMs` for Redis, so that the first calls are limited too; without Redis the
 * service starts anyway, letting calls through until Redis answers.
 */
export async function openRateLimiter(
  options: RateLimiterOptions,
  logger: Logger,
  readyTimeoutMs = 2_000,
): Promise<RateLimiter> {
  if (options.kind === "embedded") return new InProcessRateLimiter();
  // One line per 10 s at most while Redis is down, not one per call.
  let quietUntil = 0;
  const warn = (error: unknown, message: string) => {
    const now = Date.now();
    if (now < quietUntil) return;
    quietUntil = now + 10_000;
    logger.warn({ err: error }, message);
  };
  const redis = connectRedis(
    { url: options.redisUrl, clusterNodes: options.redisClusterNodes },
    {
      commandTimeoutMs: 200,
      onError: (error) => warn(error, "rate-limit Redis connection failed"),
    },
  );
  try {
    await once(redis, "ready", { signal: AbortSignal.timeout(readyTimeoutMs) });
  } catch (error) {
    warn(error, "rate-limit Redis not reachable at start; calls are let through until it is");
  }
  return new RedisRateLimiter(redis, {
    keyPrefix: options.keyPrefix,
    onUnavailable: (error) => warn(error, "rate limits not enforced: Redis does not answer"),
  });
}
