/** A token bucket: `ratePerSecond` tokens flow in, up to `burst` are kept. */
export interface BucketRule {
  /** Where the bucket is kept; buckets of one call share a tenant, e.g. `acme` and `acme/u/bob`. */
  readonly key: string;
  readonly ratePerSecond: number;
  readonly burst: number;
}

export type RateDecision =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly retryAfterMs: number };

/**
 * Takes one token from every bucket of a call, or from none: a call refused by its user's
 * bucket does not spend its tenant's.
 */
export interface RateLimiter {
  take(buckets: readonly BucketRule[]): Promise<RateDecision>;
  close(): Promise<void>;
}

/** Per-tenant request rates and stream caps; every tenant has them, with these defaults. */
export interface TenantLimits {
  /** Calls per second of the whole tenant, every caller together. */
  readonly tenantRequestsPerSecond: number;
  readonly tenantBurst: number;
  /** Calls per second of one user token's user. */
  readonly userRequestsPerSecond: number;
  readonly userBurst: number;
  /** WatchReceipts streams one user may hold open on one instance. */
  readonly streamsPerUser: number;
}

export const defaultTenantLimits: TenantLimits = Object.freeze({
  tenantRequestsPerSecond: 1_000,
  tenantBurst: 2_000,
  userRequestsPerSecond: 20,
  userBurst: 40,
  streamsPerUser: 10,
});

/** The state of one bucket, refilled lazily when it is next used. */
export interface BucketState {
  readonly tokens: number;
  readonly at: number;
}

/**
 * The bucket arithmetic, shared by the in-process limiter (the Redis script does the same in
 * Lua): refill for the time elapsed, then either take one token or say how long until one is
 * there.
 */
export function refill(state: BucketState | undefined, rule: BucketRule, now: number): number {
  if (state === undefined) return rule.burst;
  const elapsed = Math.max(0, now - state.at);
  return Math.min(rule.burst, state.tokens + (elapsed * rule.ratePerSecond) / 1000);
}

export function msUntilToken(tokens: number, rule: BucketRule): number {
  return Math.max(1, Math.ceil(((1 - tokens) * 1000) / rule.ratePerSecond));
}
