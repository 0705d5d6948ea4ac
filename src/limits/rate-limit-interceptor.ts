import { Code, type Interceptor } from "@connectrpc/connect";
import { retryLaterError } from "../api/error-mapping.js";
import { callerKey, tenantKey } from "../api/tenant-context.js";
import type { BucketRule, RateLimiter, TenantLimits } from "./rate-limiter.js";

/**
 * Per-tenant and per-user request rates. Runs after authentication: every call spends a token
 * of its tenant's bucket, calls with a user token also one of that user's. A stream counts
 * once, when it opens. Refused calls get RESOURCE_EXHAUSTED with `retry-after-ms`.
 */
export function rateLimitInterceptor(
  limiter: RateLimiter,
  limitsOf: (tenant: string) => TenantLimits,
  onRejected: () => void = () => {},
): Interceptor {
  return (next) => async (request) => {
    const tenant = request.contextValues.get(tenantKey);
    const caller = request.contextValues.get(callerKey);
    const limits = limitsOf(tenant);
    // The tenant in braces is a Redis Cluster hash tag: a call's buckets live on one node.
    const buckets: BucketRule[] = [
      {
        key: `{${tenant}}`,
        ratePerSecond: limits.tenantRequestsPerSecond,
        burst: limits.tenantBurst,
      },
    ];
    if (caller.kind === "user") {
      buckets.push({
        key: `{${tenant}}/u/${caller.userId}`,
        ratePerSecond: limits.userRequestsPerSecond,
        burst: limits.userBurst,
      });
    }
    const decision = await limiter.take(buckets);
    if (!decision.allowed) {
      onRejected();
      throw retryLaterError(
        `too many requests; retry in ${decision.retryAfterMs} ms`,
        Code.ResourceExhausted,
        decision.retryAfterMs,
      );
    }
    return next(request);
  };
}
