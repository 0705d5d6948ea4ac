import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import type { Logger } from "../logger.js";
import type { ChangeFeed } from "../store/change-feed.js";
import type { ReceiptStore } from "../store/receipt-store.js";
import { callMetrics } from "./call-metrics.js";
import { callTimeLimitInterceptor } from "./call-time-limit-interceptor.js";
import { drainInterceptor } from "./drain-interceptor.js";
import { type HttpHandler, opsHttpHandler } from "./http-endpoints.js";
import { measureFeed, measureStore } from "./measured-store.js";
import { Metrics, measureRedisCommands } from "./metrics.js";
import { observeCalls } from "./observe-calls.js";
import { exceptOpsServices, registerOpsRoutes } from "./ops-routes.js";
import { type HealthProbe, Readiness } from "./readiness.js";
import { requestLog } from "./request-log.js";

export interface Operations {
  readonly metrics: Metrics;
  readonly readiness: Readiness;
  /** The store and feed to hand to the domain: the same, with every call timed. */
  readonly store: ReceiptStore;
  readonly feed: ChangeFeed;
  /**
   * Outermost interceptors: request log and metrics (one layer), the drain gate, the time
   * limit of a call and its end on abort.
   */
  readonly interceptors: readonly Interceptor[];
  /** Registers grpc.health.v1.Health and server reflection. */
  readonly routes: (router: ConnectRouter) => void;
  /** GET /healthz, /readyz and /metrics. */
  readonly httpHandler: HttpHandler;
  /** Wraps an API interceptor (auth, limits) so that health and reflection calls skip it. */
  readonly exceptOps: (interceptor: Interceptor) => Interceptor;
  /** Stops measuring Redis commands; open health watches end through `readiness.close()`. */
  close(): void;
}

/**
 * Health, readiness, metrics and request logs for one app. Probes: the store
 * (`ping`) and the change feed (a `head` round trip, which reaches Redis when
 * the feed lives there), plus any the backend adds.
 */
export function createOperations(deps: {
  readonly store: ReceiptStore;
  readonly feed: ChangeFeed;
  readonly logger: Logger;
  readonly probes?: readonly HealthProbe[];
  /** Metrics the backend already reports into; a fresh registry otherwise. */
  readonly metrics?: Metrics;
  /** The longest a unary call may take, whatever its client's deadline. */
  readonly maxCallMs: number;
}): Operations {
  const metrics = deps.metrics ?? new Metrics();
  const readiness = new Readiness({
    probes: [
      { name: "store", check: () => deps.store.ping() },
      { name: "change-feed", check: () => deps.feed.head("") },
      ...(deps.probes ?? []),
    ],
  });
  const stopMeasuringRedis = measureRedisCommands(metrics);
  return {
    metrics,
    readiness,
    store: measureStore(deps.store, metrics),
    feed: measureFeed(deps.feed, metrics),
    interceptors: [
      observeCalls(requestLog(deps.logger), callMetrics(metrics)),
      drainInterceptor(readiness),
      callTimeLimitInterceptor(deps.maxCallMs),
    ],
    routes: (router) => registerOpsRoutes(router, readiness),
    httpHandler: opsHttpHandler({ readiness, metrics }),
    exceptOps: exceptOpsServices,
    close() {
      readiness.close();
      stopMeasuringRedis();
    },
  };
}
