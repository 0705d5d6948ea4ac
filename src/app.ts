import { join } from "node:path";
import type { DatabaseSync } from "node:sqlite";
import type { ConnectRouter } from "@connectrpc/connect";
import { openAccessControl } from "./auth/access-control.js";
import { TenantConfigError } from "./auth/tenant-config.js";
import { type Config, ConfigError } from "./config.js";
import { MembershipMonitor } from "./domain/membership-monitor.js";
import { MembershipService } from "./domain/membership-service.js";
import { MessageDeletion } from "./domain/message-deletion.js";
import { PrivacyService } from "./domain/privacy-service.js";
import { ReaderView } from "./domain/reader-view.js";
import { defaultTenantPrivacy, ReceiptPrivacy } from "./domain/receipt-privacy.js";
import { ReceiptService } from "./domain/receipt-service.js";
import { ReceiptWatcher } from "./domain/receipt-watcher.js";
import { UserErasure } from "./domain/user-erasure.js";
import { loadSheddingInterceptor } from "./limits/load-shedding-interceptor.js";
import { type Logger, silentLogger } from "./logger.js";
import { shuttingDown } from "./ops/drain-interceptor.js";
import { Metrics } from "./ops/metrics.js";
import { createOperations } from "./ops/operations.js";
import type { HealthProbe } from "./ops/readiness.js";
import { createReceiptServer, type ReceiptServer } from "./server.js";
import { openCassandraStore } from "./store/cassandra/open-cassandra-store.js";
import type { ChangeFeed } from "./store/change-feed.js";
import type { ReceiptStore } from "./store/receipt-store.js";
import { RedisChangeFeed } from "./store/redis/redis-change-feed.js";
import { SqliteChangeFeed } from "./store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "./store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "./store/sqlite/sqlite-receipt-store.js";
import { lookAgainFromNow } from "./store/sqlite/sqlite-row-changes.js";
import { SqliteWriteBatcher } from "./store/sqlite/sqlite-write-batcher.js";
import type { WebhookStateStore } from "./store/webhook-state.js";
import { metricsObserver } from "./webhooks/metrics-observer.js";
import { openWebhookState } from "./webhooks/open-webhook-state.js";
import { WebhookDispatcher } from "./webhooks/webhook-dispatcher.js";

export interface Backend {
  readonly store: ReceiptStore;
  readonly feed: ChangeFeed;
  /** More dependencies readiness must see answering (beyond store.ping and the feed). */
  readonly probes?: readonly HealthProbe[];
  /** The metrics backend parts report into (the read-count cache); the app serves them. */
  readonly metrics?: Metrics;
  /** Webhook leases, cursors and failures: beside the change log (SQLite or Redis). */
  readonly webhookState?: WebhookStateStore;
}

/** Opens the configured backend. */
export async function openBackend(config: Config, logger: Logger = silentLogger): Promise<Backend> {
  const metrics = new Metrics();
  let sqlite: { readonly db: DatabaseSync; readonly writes: SqliteWriteBatcher } | undefined;
  // Opened only when the embedded store or the embedded change feed needs it; both share the
  // connection and its one write batcher, so that their writes commit together.
  const embedded = () => {
    if (sqlite === undefined) {
      const db = openSqliteDatabase(
        config.dataDir === ":memory:" ? ":memory:" : join(config.dataDir, "receipts.db"),
      );
      sqlite = { db, writes: new SqliteWriteBatcher(db) };
    }
    return sqlite;
  };
  // Seam: with the Cassandra store, the change feed is chosen on its own (RECEIPTS_CHANGE_FEED).
  const store =
    config.store === "cassandra"
      ? await openCassandraStore(
          {
            ...config.cassandra,
            redis: {
              url: config.redisUrl,
              clusterNodes: config.redisClusterNodes,
              keyPrefix: config.redisKeyPrefix,
              cacheTtlMs: config.cassandra.cacheTtlMs,
              cacheMaxSuspects: config.cassandra.cacheMaxSuspects,
              onCacheLookup: (hits, misses) => {
                metrics.cacheLookups.inc({ cache: "read_counts", result: "hit" }, hits);
                metrics.cacheLookups.inc({ cache: "read_counts", result: "miss" }, misses);
              },
            },
            onServerWarning: (warning) => metrics.cassandraWarnings.inc(warning),
          },
          logger,
        )
      : new SqliteReceiptStore(embedded().db, embedded().writes);
  const feed =
    config.changeFeed === "redis"
      ? await RedisChangeFeed.open({
          url: config.redisUrl,
          clusterNodes: config.redisClusterNodes,
          keyPrefix: config.redisKeyPrefix,
          retentionMs: config.watch.retentionMs,
          logger,
        })
      : new SqliteChangeFeed(embedded().db, embedded().writes, {
          retentionMs: config.watch.retentionMs,
        });
  return {
    store,
    feed,
    metrics,
    webhookState: openWebhookState(config, embedded, logger),
  };
}

export interface App {
  readonly port: number;
  /** This app's Prometheus registry and metrics (served at GET /metrics). */
  readonly metrics: Metrics;
  /** Re-reads the tenant configuration (SIGHUP); a broken one is logged and not used. */
  reloadTenants(): Promise<boolean>;
  /** Graceful stop: streams end with a resume token, in-flight calls finish, stores close. */
  stop(): Promise<void>;
}

/** Wires domain, transport and backend together and listens. */
export async function startApp(
  config: Config,
  backend: Backend,
  logger: Logger,
  /** More routes on the same port (the benchmark's empty RPC, bench/bench-server.ts). */
  extraRoutes?: (router: ConnectRouter) => void,
): Promise<App> {
  const ops = createOperations({ ...backend, logger, maxCallMs: config.maxCallMs });
  const memberships = new MembershipMonitor({
    store: ops.store,
    intervalMs: config.watch.accessCheckMs,
  });
  const membership = new MembershipService({
    ...ops,
    onMembersRemoved: (tenant, groupId) => void memberships.recheck(tenant, groupId),
  });
  const access = await openAccessControl({
    sources: config.tenants,
    rateLimits: {
      kind: config.rateLimiter,
      redisUrl: config.redisUrl,
      redisClusterNodes: config.redisClusterNodes,
      keyPrefix: `${config.redisKeyPrefix}rate:`,
    },
    // Measured: the policy's reads are the calls' reads, timed like the services' own.
    store: ops.store,
    memberships,
    logger,
    onRateLimited: () => ops.metrics.rateLimitRejections.inc({ limit: "request_rate" }),
  }).catch((error: unknown) => {
    throw error instanceof TenantConfigError ? new ConfigError(error.problems) : error;
  });
  // One privacy decider for receipts and settings: a change made here is decided with at once.
  const privacy = new ReceiptPrivacy({
    store: ops.store,
    privacyOf: (tenant) => access.registry.settingsOf(tenant).privacy ?? defaultTenantPrivacy,
  });
  const watcher = new ReceiptWatcher({
    feed: ops.feed,
    policy: access.policy,
    ...config.watch,
    views: new ReaderView(ops.store, privacy),
  });
  const receipts = new ReceiptService({
    ...ops,
    privacy,
    policy: access.policy,
    retentionOf: (tenant) => access.registry.settingsOf(tenant).retentionMs,
    onAnnounceError: (error, what) =>
      // Not lost: the change stays in the store's outbox and the next sweep publishes it.
      logger.warn({ err: error, what }, "change log unreachable; changes stay pending"),
  });
  receipts.announcer.start();
  const deletion = new MessageDeletion({ store: ops.store, announcer: receipts.announcer });
  const webhooks =
    backend.webhookState === undefined
      ? undefined
      : new WebhookDispatcher({
          feed: backend.feed,
          state: backend.webhookState,
          endpoints: () => access.registry.webhooks,
          rules: config.tenants.webhookUrls,
          ...config.webhooks,
          observer: metricsObserver(ops.metrics),
          logger: logger.child({ component: "webhooks" }),
        });
  webhooks?.start();
  const shutdown = new AbortController();
  const server: ReceiptServer = createReceiptServer(
    {
      receipts,
      membership,
      deletion,
      watcher,
      userData: {
        erasure: new UserErasure({
          store: ops.store,
          chunkSize: config.erasure.chunkRows,
          callBudgetMs: config.erasure.callBudgetMs,
        }),
        store: ops.store,
      },
      privacy: new PrivacyService({ store: ops.store, privacy }),
      logger,
    },
    {
      shutdownSignal: shutdown.signal,
      // The embedded store's memories look for other processes' commits again.
      onRequestArrived: lookAgainFromNow,
      corsOrigins: config.corsOrigins,
      interceptors: [
        ...ops.interceptors,
        // Before authentication: an overloaded instance refuses before spending anything.
        ops.exceptOps(
          loadSheddingInterceptor(config.maxCallsInFlight, () =>
            ops.metrics.rateLimitRejections.inc({ limit: "calls_in_flight" }),
          ),
        ),
        ...access.interceptors.map(ops.exceptOps),
      ],
      readMaxBytes: config.maxRequestBytes,
      clientLimits: {
        connectionsPerAddress: config.maxConnectionsPerAddress,
        streamsPerAddress: config.maxStreamsPerAddress,
        // A request must be in before its call's time is up; its headers sooner.
        bodyTimeoutMs: config.maxCallMs,
        headersTimeoutMs: Math.min(10_000, config.maxCallMs),
        onRefused: (limit) => ops.metrics.rateLimitRejections.inc({ limit }),
      },
      routes: (router) => {
        ops.routes(router);
        extraRoutes?.(router);
      },
      fallback: ops.httpHandler,
    },
  );
  const port = await server.listen(config.port, config.host);
  return {
    port,
    metrics: ops.metrics,
    async reloadTenants() {
      const reloaded = await access.registry.reload();
      // Endpoints added by the reload start now, not at the next lease tick.
      if (reloaded) await webhooks?.tick();
      return reloaded;
    },
    async stop() {
      // Not ready first (health NOT_SERVING, /readyz 503, new calls UNAVAILABLE), streams end.
      ops.readiness.drain();
      watcher.close();
      memberships.close();
      // Load balancers notice before the port closes; then health watches end too.
      await new Promise((resolve) => setTimeout(resolve, config.shutdownDelayMs));
      ops.close();
      // In-flight calls get the grace period. Shortly before it ends, calls still running are
      // answered UNAVAILABLE (their signal aborts) so that the answer is out before connections drop.
      const cutOffMs = Math.max(0, config.shutdownGraceMs - 250);
      const cancel = setTimeout(() => shutdown.abort(shuttingDown()), cutOffMs);
      await server.close(config.shutdownGraceMs);
      clearTimeout(cancel);
      shutdown.abort(shuttingDown());
      // Publishes in flight finish; what they could not publish stays pending for the next start.
      await receipts.announcer.close();
      // Leases released: another instance takes the endpoints over from their cursors at once.
      await webhooks?.close();
      await backend.webhookState?.close();
      await access.close();
      await backend.feed.close();
      await backend.store.close();
    },
  };
}
