import type { Result } from "ioredis";
import { type RedisClient, StallGuard } from "../store/redis/redis-connection.js";
import type { BucketRule, RateDecision, RateLimiter } from "./rate-limiter.js";

/**
 * Takes one token from every bucket in KEYS, or none. ARGV holds rate per second and burst for
 * each key in turn. Time is Redis's own clock, so instances with skewed clocks agree. Returns
 * {1, 0} when allowed, else {0, milliseconds until every bucket has a token}. Same arithmetic
 * as rate-limiter.ts's refill and msUntilToken.
 */
const takeTokensLua = `
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local levels = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1])
  local at = tonumber(state[2])
  if tokens == nil or at == nil then
    tokens = burst
  else
    tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
  end
  levels[i] = tokens
  if tokens < 1 then
    wait = math.max(wait, math.max(1, math.ceil((1 - tokens) * 1000 / rate)))
  end
end
if wait > 0 then
  return {0, wait}
end
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tokens = levels[i] - 1
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', now)
  -- Forget the bucket once it would be full again: a missing bucket starts full.
  redis.call('PEXPIRE', key, math.ceil((burst - tokens) * 1000 / rate) + 1000)
end
return {1, 0}
`;

declare module "ioredis" {
  interface RedisCommander<Context> {
    receiptsTakeTokens(
      numberOfKeys: number,
      ...keysThenArgs: (string | number)[]
    ): Result<[number, number], Context>;
  }
}

export interface RedisRateLimiterOptions {
  /** Prepended to every bucket key. */
  readonly keyPrefix?: string;
  /** Called when Redis cannot answer; the call is then let through (fail open). */
  readonly onUnavailable?: (error: unknown) => void;
}

/**
 * Token buckets shared by every instance through Redis, in one Lua script per call. Keys of one
 * call share the tenant as hash tag (`{tenant}`), so the script also runs on Redis Cluster.
 * When Redis does not answer, calls are let through: limits protect the service, an outage of
 * Redis should not take it down.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly #redis: RedisClient;
  readonly #guard: StallGuard;
  readonly #keyPrefix: string;
  readonly #onUnavailable: (error: unknown) => void;

  constructor(redis: RedisClient, options: RedisRateLimiterOptions = {}) {
    this.#redis = redis;
    this.#guard = new StallGuard(redis);
    this.#keyPrefix = options.keyPrefix ?? "receipts:rate:";
    this.#onUnavailable = options.onUnavailable ?? (() => {});
    redis.defineCommand("receiptsTakeTokens", { lua: takeTokensLua });
  }

  async take(buckets: readonly BucketRule[]): Promise<RateDecision> {
    if (buckets.length === 0) return { allowed: true };
    // A stalled Redis is not asked at all: each call would wait out the command timeout.
    if (!this.#guard.usable) return { allowed: true };
    const keys = buckets.map((rule) => this.#keyPrefix + rule.key);
    const args = buckets.flatMap((rule) => [rule.ratePerSecond, rule.burst]);
    try {
      const [allowed, wait] = await this.#redis.receiptsTakeTokens(keys.length, ...keys, ...args);
      return allowed === 1 ? { allowed: true } : { allowed: false, retryAfterMs: wait };
    } catch (error) {
      this.#guard.failed(error);
      this.#onUnavailable(error);
      return { allowed: true };
    }
  }

  async close(): Promise<void> {
    this.#redis.disconnect();
  }
}
