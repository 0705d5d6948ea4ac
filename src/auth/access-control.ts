import type { Interceptor } from "@connectrpc/connect";
import { AccessPolicy, type AccessPolicyDeps } from "../domain/access-policy.js";
import type { MembershipMonitor } from "../domain/membership-monitor.js";
import { openRateLimiter, type RateLimiterOptions } from "../limits/open-rate-limiter.js";
import { rateLimitInterceptor } from "../limits/rate-limit-interceptor.js";
import { streamLimitInterceptor } from "../limits/stream-limit-interceptor.js";
import type { Logger } from "../logger.js";
import { authInterceptor } from "./auth-interceptor.js";
import { StreamCredentials } from "./stream-credentials.js";
import { TenantRegistry, type TenantSources } from "./tenant-registry.js";

export interface AccessControl {
  readonly registry: TenantRegistry;
  readonly policy: AccessPolicy;
  /** Authentication, then rate limits, then the per-user stream cap; none in development mode. */
  readonly interceptors: readonly Interceptor[];
  close(): Promise<void>;
}

/**
 * Tenants, authentication, authorization and limits, wired together. Throws
 * TenantConfigError when the tenants cannot be used.
 */
export async function openAccessControl(deps: {
  readonly sources: TenantSources;
  readonly rateLimits: RateLimiterOptions;
  /** What the policy reads (conversations, messages, memberships, erasures). */
  readonly store: AccessPolicyDeps["store"];
  /** Follows the groups users' streams watch, so that a stream ends when its user leaves. */
  readonly memberships?: MembershipMonitor;
  readonly logger: Logger;
  /** Told of every call a rate limit refused (metrics). */
  readonly onRateLimited?: () => void;
}): Promise<AccessControl> {
  const registry = await TenantRegistry.open(deps.sources, deps.logger);
  // Development mode has no limits, so it never needs Redis.
  const limiter = registry.devMode
    ? undefined
    : await openRateLimiter(deps.rateLimits, deps.logger.child({ component: "rate-limits" }));
  const policy = new AccessPolicy({
    store: deps.store,
    settingsOf: (tenant) => registry.settingsOf(tenant),
    memberships: deps.memberships,
  });
  // Open streams' credentials are checked again whenever the tenants change.
  const streams = new StreamCredentials(() => registry.credentials);
  registry.onReload(() => void streams.recheck());
  const limitsOf = (tenant: string) => registry.limitsOf(tenant);
  if (registry.devMode) {
    deps.logger.warn(
      "DEVELOPMENT MODE: no tenants configured (RECEIPTS_TENANTS_FILE, RECEIPTS_TENANTS); every call acts as the default tenant's backend, without credentials. Loopback only.",
    );
  } else {
    deps.logger.info({ tenants: registry.tenantIds.length }, "tenants loaded");
  }
  return {
    registry,
    policy,
    interceptors:
      limiter === undefined
        ? []
        : [
            authInterceptor(() => registry.credentials, deps.logger, streams),
            rateLimitInterceptor(limiter, limitsOf, deps.onRateLimited),
            streamLimitInterceptor(limitsOf),
          ],
    async close() {
      registry.close();
      await limiter?.close();
    },
  };
}
