import { createRouterTransport, type Transport } from "@connectrpc/connect";
import { type ApiDeps, errorMappingInterceptor, registerRoutes } from "../../src/api/routes.js";
import { openAccessControl } from "../../src/auth/access-control.js";
import { MembershipService } from "../../src/domain/membership-service.js";
import { MessageDeletion } from "../../src/domain/message-deletion.js";
import { PrivacyService } from "../../src/domain/privacy-service.js";
import { ReaderView } from "../../src/domain/reader-view.js";
import { defaultTenantPrivacy, ReceiptPrivacy } from "../../src/domain/receipt-privacy.js";
import { ReceiptService } from "../../src/domain/receipt-service.js";
import { ReceiptWatcher } from "../../src/domain/receipt-watcher.js";
import { UserErasure } from "../../src/domain/user-erasure.js";
import { silentLogger } from "../../src/logger.js";
import { SqliteChangeFeed } from "../../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../../src/store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "../../src/store/sqlite/sqlite-receipt-store.js";
import { SqliteWriteBatcher } from "../../src/store/sqlite/sqlite-write-batcher.js";

export interface InMemoryApi {
  /** The API's routes, served in memory (no socket, no HTTP). */
  readonly transport: Transport;
  /** What the routes are made of, for a test that serves them itself. */
  readonly deps: ApiDeps;
  close(): Promise<void>;
}

/**
 * The API as src/app.ts wires it (development mode without `tenantsJson`: no tenants, the
 * default tenant), on an in-memory embedded store and change feed, behind connect's in-memory
 * router transport.
 */
export async function openInMemoryApi(tenantsJson?: string): Promise<InMemoryApi> {
  const db = openSqliteDatabase(":memory:");
  const writes = new SqliteWriteBatcher(db);
  const store = new SqliteReceiptStore(db, writes);
  const feed = new SqliteChangeFeed(db, writes, { retentionMs: 3_600_000 });
  const membership = new MembershipService({ store, feed });
  const access = await openAccessControl({
    sources: { file: undefined, json: tenantsJson, pollIntervalMs: 60_000 },
    rateLimits: { kind: "embedded", redisUrl: "", keyPrefix: "" },
    store,
    logger: silentLogger,
  });
  const privacy = new ReceiptPrivacy({
    store,
    privacyOf: (tenant) => access.registry.settingsOf(tenant).privacy ?? defaultTenantPrivacy,
  });
  const receipts = new ReceiptService({
    store,
    feed,
    privacy,
    policy: access.policy,
    retentionOf: (tenant) => access.registry.settingsOf(tenant).retentionMs,
  });
  const watcher = new ReceiptWatcher({
    feed,
    policy: access.policy,
    heartbeatMs: 60_000,
    bufferLimit: 100,
    maxStreams: 10,
    views: new ReaderView(store, privacy),
  });
  const deletion = new MessageDeletion({ store, announcer: receipts.announcer });
  const deps: ApiDeps = {
    receipts,
    membership,
    deletion,
    privacy: new PrivacyService({ store, privacy }),
    watcher,
    userData: { erasure: new UserErasure({ store }), store },
    logger: silentLogger,
  };
  const transport = createRouterTransport((router) => registerRoutes(router, deps), {
    router: { interceptors: [...access.interceptors, errorMappingInterceptor(silentLogger)] },
  });
  return {
    transport,
    deps,
    async close() {
      watcher.close();
      await receipts.announcer.close();
      await access.close();
      await feed.close();
      await store.close();
    },
  };
}
