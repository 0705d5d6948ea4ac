import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { EndpointKey, FailedDelivery, WebhookStateStore } from "../webhook-state.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

/**
 * Created here rather than as a numbered migration: the tables belong to
 * webhook delivery alone and are created the first time it opens the file.
 */
const schema = `
  CREATE TABLE IF NOT EXISTS webhook_endpoints (
    tenant TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    cursor TEXT,
    disabled_url TEXT,
    lease_owner TEXT,
    lease_expires_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, endpoint)
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS webhook_failures (
    tenant TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    body TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    first_attempt_at INTEGER NOT NULL,
    failed_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    replay_requested INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, endpoint, webhook_id)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS webhook_failures_by_time ON webhook_failures (tenant, failed_at);
`;

interface FailureRow {
  tenant: string;
  endpoint: string;
  webhook_id: string;
  body: string;
  event_count: number;
  first_attempt_at: number;
  failed_at: number;
  attempts: number;
  last_error: string;
  replay_requested: number;
}

/** Webhook state in the embedded database, written through its group commit. */
export class SqliteWebhookState implements WebhookStateStore {
  /** The connection's group commit, shared with the store and the feed that use it. */
  readonly #writes: SqliteWriteBatcher;
  readonly #clock: () => number;
  readonly #sql: Record<
    | "lease"
    | "release"
    | "cursor"
    | "saveCursor"
    | "setDisabled"
    | "addFailed"
    | "listAll"
    | "listEndpoint"
    | "replayAll"
    | "replayOne"
    | "replays"
    | "removeFailed"
    | "pruneFailed",
    StatementSync
  >;

  constructor(db: DatabaseSync, writes: SqliteWriteBatcher, clock: () => number = Date.now) {
    this.#writes = writes;
    this.#clock = clock;
    db.exec(schema);
    this.#sql = {
      lease: db.prepare(
        `INSERT INTO webhook_endpoints (tenant, endpoint, lease_owner, lease_expires_at)
         VALUES (:tenant, :endpoint, :owner, :expires)
         ON CONFLICT (tenant, endpoint) DO UPDATE SET lease_owner = :owner, lease_expires_at = :expires
         WHERE lease_owner IS NULL OR lease_owner = :owner OR lease_expires_at <= :now`,
      ),
      release: db.prepare(
        `UPDATE webhook_endpoints SET lease_owner = NULL, lease_expires_at = 0
         WHERE tenant = ? AND endpoint = ? AND lease_owner = ?`,
      ),
      cursor: db.prepare(
        "SELECT cursor, disabled_url FROM webhook_endpoints WHERE tenant = ? AND endpoint = ?",
      ),
      saveCursor: db.prepare(
        `UPDATE webhook_endpoints SET cursor = ?
         WHERE tenant = ? AND endpoint = ? AND lease_owner = ? AND lease_expires_at > ?`,
      ),
      setDisabled: db.prepare(
        `INSERT INTO webhook_endpoints (tenant, endpoint, disabled_url) VALUES (?, ?, ?)
         ON CONFLICT (tenant, endpoint) DO UPDATE SET disabled_url = excluded.disabled_url`,
      ),
      addFailed: db.prepare(
        `INSERT OR REPLACE INTO webhook_failures (tenant, endpoint, webhook_id, body, event_count,
           first_attempt_at, failed_at, attempts, last_error, replay_requested)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      listAll: db.prepare(
        "SELECT * FROM webhook_failures WHERE tenant = ? ORDER BY failed_at, webhook_id LIMIT ?",
      ),
      listEndpoint: db.prepare(
        `SELECT * FROM webhook_failures WHERE tenant = ? AND endpoint = ?
         ORDER BY failed_at, webhook_id LIMIT ?`,
      ),
      replayAll: db.prepare(
        "UPDATE webhook_failures SET replay_requested = 1 WHERE tenant = ? AND endpoint = ?",
      ),
      replayOne: db.prepare(
        `UPDATE webhook_failures SET replay_requested = 1
         WHERE tenant = ? AND endpoint = ? AND webhook_id = ?`,
      ),
      replays: db.prepare(
        `SELECT * FROM webhook_failures WHERE tenant = ? AND endpoint = ? AND replay_requested = 1
         ORDER BY failed_at, webhook_id LIMIT ?`,
      ),
      removeFailed: db.prepare(
        "DELETE FROM webhook_failures WHERE tenant = ? AND endpoint = ? AND webhook_id = ?",
      ),
      pruneFailed: db.prepare(
        `DELETE FROM webhook_failures WHERE (tenant, endpoint, webhook_id) IN (
           SELECT tenant, endpoint, webhook_id FROM webhook_failures
           WHERE tenant = ? AND failed_at < ? ORDER BY failed_at LIMIT ?)`,
      ),
    };
  }

  #write<T>(work: () => T): Promise<T> {
    return this.#writes.write(work);
  }

  acquireLease(key: EndpointKey, owner: string, ttlMs: number): Promise<boolean> {
    const now = this.#clock();
    return this.#write(
      () => Number(this.#sql.lease.run({ ...key, owner, expires: now + ttlMs, now }).changes) > 0,
    );
  }

  async releaseLease(key: EndpointKey, owner: string): Promise<void> {
    await this.#write(() => this.#sql.release.run(key.tenant, key.endpoint, owner));
  }

  async cursor(key: EndpointKey): Promise<string | undefined> {
    return this.#row(key)?.cursor ?? undefined;
  }

  saveCursor(key: EndpointKey, owner: string, position: string): Promise<boolean> {
    // Saved every 200 ms per endpoint while it delivers: the save rides along with the next
    // commit (the receipts being delivered bring plenty), instead of an fsync of its own that
    // would hold SendReceipts up. The lease is checked when the write runs, not when asked.
    return this.#writes.writeSoon(
      () =>
        Number(
          this.#sql.saveCursor.run(position, key.tenant, key.endpoint, owner, this.#clock())
            .changes,
        ) > 0,
      cursorSaveWithinMs,
    );
  }

  async disabledUrl(key: EndpointKey): Promise<string | undefined> {
    return this.#row(key)?.disabled_url ?? undefined;
  }

  async setDisabled(key: EndpointKey, url: string | undefined): Promise<void> {
    await this.#write(() => this.#sql.setDisabled.run(key.tenant, key.endpoint, url ?? null));
  }

  async addFailed(d: FailedDelivery): Promise<void> {
    await this.#write(() =>
      this.#sql.addFailed.run(
        d.tenant,
        d.endpoint,
        d.webhookId,
        d.body,
        d.eventCount,
        d.firstAttemptAt,
        d.failedAt,
        d.attempts,
        d.lastError,
        d.replayRequested ? 1 : 0,
      ),
    );
  }

  async listFailed(
    tenant: string,
    endpoint: string | undefined,
    limit: number,
  ): Promise<FailedDelivery[]> {
    const rows =
      endpoint === undefined
        ? this.#sql.listAll.all(tenant, limit)
        : this.#sql.listEndpoint.all(tenant, endpoint, limit);
    return (rows as unknown as FailureRow[]).map(failureOf);
  }

  requestReplay(key: EndpointKey, ids: readonly string[]): Promise<number> {
    return this.#write(() => {
      if (ids.length === 0)
        return Number(this.#sql.replayAll.run(key.tenant, key.endpoint).changes);
      let marked = 0;
      for (const id of ids) {
        marked += Number(this.#sql.replayOne.run(key.tenant, key.endpoint, id).changes);
      }
      return marked;
    });
  }

  async replays(key: EndpointKey, limit: number): Promise<FailedDelivery[]> {
    const rows = this.#sql.replays.all(key.tenant, key.endpoint, limit) as unknown as FailureRow[];
    return rows.map(failureOf);
  }

  async removeFailed(key: EndpointKey, webhookId: string): Promise<void> {
    await this.#write(() => this.#sql.removeFailed.run(key.tenant, key.endpoint, webhookId));
  }

  pruneFailed(tenant: string, failedBefore: number, limit: number): Promise<number> {
    return this.#write(() =>
      Number(this.#sql.pruneFailed.run(tenant, failedBefore, limit).changes),
    );
  }

  async close(): Promise<void> {
    // The database belongs to the backend, which closes it.
  }

  #row(key: EndpointKey): { cursor: string | null; disabled_url: string | null } | undefined {
    return this.#sql.cursor.get(key.tenant, key.endpoint) as
      | { cursor: string | null; disabled_url: string | null }
      | undefined;
  }
}

function failureOf(row: FailureRow): FailedDelivery {
  return {
    webhookId: row.webhook_id,
    tenant: row.tenant,
    endpoint: row.endpoint,
    body: row.body,
    eventCount: row.event_count,
    firstAttemptAt: row.first_attempt_at,
    failedAt: row.failed_at,
    attempts: row.attempts,
    lastError: row.last_error,
    replayRequested: row.replay_requested === 1,
  };
}

/** How long a cursor save waits at most for another write to commit with. */
const cursorSaveWithinMs = 100;
