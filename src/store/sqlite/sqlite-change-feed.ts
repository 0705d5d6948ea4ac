import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { PositionedChange, ReceiptChange } from "../../domain/model.js";
import { type ChangeFeed, ChangeLogExpiredError } from "../change-feed.js";
import { inTransaction } from "./sqlite-database.js";
import { writeBatcherOf } from "./sqlite-write-batcher.js";

const positionPattern = /^\d{1,15}$/;

/**
 * The embedded change feed: a SQLite table of changes (positions are its
 * autoincrement ids, shared by all tenants) and in-process listeners. One
 * process owns the file, so in-process delivery reaches every watcher.
 */
export class SqliteChangeFeed implements ChangeFeed {
  readonly #db: DatabaseSync;
  readonly #retentionMs: number;
  readonly #clock: () => number;
  readonly #listeners = new Map<string, Set<(change: PositionedChange) => void>>();
  readonly #sql: Record<"append" | "after" | "head" | "prunedThrough" | "prune", StatementSync>;
  readonly #pruneTimer: NodeJS.Timeout;

  constructor(db: DatabaseSync, options: { retentionMs: number; clock?: () => number }) {
    this.#db = db;
    this.#retentionMs = options.retentionMs;
    this.#clock = options.clock ?? Date.now;
    this.#sql = {
      append: db.prepare(
        "INSERT INTO changes (tenant, created_at, payload) VALUES (?, ?, ?) RETURNING position",
      ),
      after: db.prepare(
        "SELECT position, payload FROM changes WHERE tenant = ? AND position > ? ORDER BY position LIMIT ?",
      ),
      head: db.prepare("SELECT coalesce(max(position), 0) AS head FROM changes"),
      prunedThrough: db.prepare("SELECT pruned_through FROM change_log_state WHERE id = 1"),
      prune: db.prepare(
        `UPDATE change_log_state SET pruned_through = max(pruned_through,
           coalesce((SELECT max(position) FROM changes WHERE created_at < ?), 0)) WHERE id = 1`,
      ),
    };
    this.prune();
    // Pruning is housekeeping: an unref'd timer never keeps the process alive.
    this.#pruneTimer = setInterval(() => this.prune(), Math.min(60_000, this.#retentionMs));
    this.#pruneTimer.unref();
  }

  async publish(tenant: string, changes: readonly ReceiptChange[]): Promise<PositionedChange[]> {
    if (changes.length === 0) return [];
    const now = this.#clock();
    const positioned = await writeBatcherOf(this.#db).write(() =>
      changes.map((change) => {
        const row = this.#sql.append.get(tenant, now, JSON.stringify(change)) as {
          position: number;
        };
        return { position: String(row.position), change };
      }),
    );
    const listeners = this.#listeners.get(tenant);
    if (listeners !== undefined) {
      for (const change of positioned) for (const listener of listeners) listener(change);
    }
    return positioned;
  }

  async readAfter(tenant: string, position: string, limit: number): Promise<PositionedChange[]> {
    const after = Number(position);
    const { pruned_through } = this.#sql.prunedThrough.get() as { pruned_through: number };
    if (after < pruned_through) {
      throw new ChangeLogExpiredError(`changes after position ${position} are no longer kept`);
    }
    const rows = this.#sql.after.all(tenant, after, limit) as unknown as {
      position: number;
      payload: string;
    }[];
    return rows.map((row) => ({
      position: String(row.position),
      change: JSON.parse(row.payload) as ReceiptChange,
    }));
  }

  async head(_tenant: string): Promise<string> {
    const { head } = this.#sql.head.get() as { head: number };
    return String(head);
  }

  listen(tenant: string, listener: (change: PositionedChange) => void): () => void {
    let listeners = this.#listeners.get(tenant);
    if (listeners === undefined) {
      listeners = new Set();
      this.#listeners.set(tenant, listeners);
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0) this.#listeners.delete(tenant);
    };
  }

  comparePositions(a: string, b: string): number {
    return Number(a) - Number(b);
  }

  isPosition(position: string): boolean {
    return positionPattern.test(position);
  }

  /** Drops changes older than the retention window and remembers how far it dropped. */
  prune(): void {
    const cutoff = this.#clock() - this.#retentionMs;
    inTransaction(this.#db, () => {
      this.#sql.prune.run(cutoff);
      this.#db.prepare("DELETE FROM changes WHERE created_at < ?").run(cutoff);
    });
  }

  async close(): Promise<void> {
    clearInterval(this.#pruneTimer);
    this.#listeners.clear();
  }
}
