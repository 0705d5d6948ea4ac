import {
  type BucketRule,
  type BucketState,
  msUntilToken,
  type RateDecision,
  type RateLimiter,
  refill,
} from "./rate-limiter.js";

/**
 * Token buckets in this process, for the embedded store (one instance). Memory stays bounded:
 * past `maxBuckets`, buckets that have filled up again (idle callers) are forgotten, which
 * changes nothing since a new bucket starts full; if that is not enough, the least recently
 * used go.
 */
export class InProcessRateLimiter implements RateLimiter {
  readonly #buckets = new Map<string, BucketState & { readonly fullAt: number }>();
  readonly #maxBuckets: number;
  readonly #clock: () => number;

  constructor(options: { maxBuckets?: number; clock?: () => number } = {}) {
    this.#maxBuckets = options.maxBuckets ?? 100_000;
    this.#clock = options.clock ?? Date.now;
  }

  get size(): number {
    return this.#buckets.size;
  }

  async take(buckets: readonly BucketRule[]): Promise<RateDecision> {
    const now = this.#clock();
    const levels = buckets.map((rule) => refill(this.#buckets.get(rule.key), rule, now));
    const waits = buckets.flatMap((rule, i) => {
      const tokens = levels[i] as number;
      return tokens >= 1 ? [] : [msUntilToken(tokens, rule)];
    });
    if (waits.length > 0) return { allowed: false, retryAfterMs: Math.max(...waits) };
    for (const [i, rule] of buckets.entries()) {
      const tokens = (levels[i] as number) - 1;
      // Re-insert so that Map order is least recently used first.
      this.#buckets.delete(rule.key);
      this.#buckets.set(rule.key, {
        tokens,
        at: now,
        fullAt: now + ((rule.burst - tokens) * 1000) / rule.ratePerSecond,
      });
    }
    if (this.#buckets.size > this.#maxBuckets) this.#evict(now);
    return { allowed: true };
  }

  async close(): Promise<void> {
    this.#buckets.clear();
  }

  #evict(now: number): void {
    for (const [key, bucket] of this.#buckets) {
      if (bucket.fullAt <= now) this.#buckets.delete(key);
    }
    // Down to 90%, so that a full map of busy callers is not scanned on every call.
    const target = Math.floor(this.#maxBuckets * 0.9);
    for (const key of this.#buckets.keys()) {
      if (this.#buckets.size <= target) break;
      this.#buckets.delete(key);
    }
  }
}
