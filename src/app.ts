import { join } from "node:path";
import type { Config } from "./config.js";
import { MembershipService } from "./domain/membership-service.js";
import { ReceiptService } from "./domain/receipt-service.js";
import { ReceiptWatcher } from "./domain/receipt-watcher.js";
import type { Logger } from "./logger.js";
import { createReceiptServer, type ReceiptServer } from "./server.js";
import type { ChangeFeed } from "./store/change-feed.js";
import type { ReceiptStore } from "./store/receipt-store.js";
import { SqliteChangeFeed } from "./store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "./store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "./store/sqlite/sqlite-receipt-store.js";

export interface Backend {
  readonly store: ReceiptStore;
  readonly feed: ChangeFeed;
}

/** Opens the configured backend. */
export async function openBackend(config: Config): Promise<Backend> {
  const db = openSqliteDatabase(
    config.dataDir === ":memory:" ? ":memory:" : join(config.dataDir, "receipts.db"),
  );
  return {
    store: new SqliteReceiptStore(db),
    feed: new SqliteChangeFeed(db, { retentionMs: config.watch.retentionMs }),
  };
}

export interface App {
  readonly port: number;
  /** Graceful stop: streams end with a resume token, in-flight calls finish, stores close. */
  stop(): Promise<void>;
}

/** Wires domain, transport and backend together and listens. */
export async function startApp(config: Config, backend: Backend, logger: Logger): Promise<App> {
  const receipts = new ReceiptService(backend);
  const membership = new MembershipService(backend);
  const watcher = new ReceiptWatcher({ feed: backend.feed, ...config.watch });
  const shutdown = new AbortController();
  const server: ReceiptServer = createReceiptServer(
    { receipts, membership, watcher, logger },
    { shutdownSignal: shutdown.signal },
  );
  const port = await server.listen(config.port, config.host);
  return {
    port,
    async stop() {
      watcher.close();
      shutdown.abort();
      await server.close(config.shutdownGraceMs);
      await backend.feed.close();
      await backend.store.close();
    },
  };
}
