import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { PositionedChange, ReceiptChange } from "../../domain/model.js";
import { type ChangeFeed, ChangeLogExpiredError } from "../change-feed.js";
import { inTransaction } from "./sqlite-database.js";
import { writeBatcherOf } from "./sqlite-write-batcher.js";

const positionPattern = /^\d{1,15}$/;

/** Rows dropped per pruning transaction, so that no single step holds the event loop for long. */
const pruneChunk = 2_000;

/**
 * The oldest changes before a cutoff, read through the age index only. Without
 * INDEXED BY, SQLite answers max(position) by walking the table backwards from
 * the newest row, i.e. through every change still kept: a full scan per prune
 * that grew with the log (the 10-minute soak's latency spikes every 60 s).
 */
const expiredChunk = `SELECT position FROM changes INDEXED BY changes_by_age
  WHERE created_at < :cutoff ORDER BY created_at, position LIMIT ${pruneChunk}`;

/** The statements of one pruning step; exported so a test can check their query plans. */
export const pruneStatements = {
  markPruned: `UPDATE change_log_state SET pruned_through = max(pruned_through,
    coalesce((SELECT max(position) FROM (${expiredChunk})), 0)) WHERE id = 1`,
  dropChunk: `DELETE FROM changes WHERE position IN (${expiredChunk})`,
} as const;

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
  readonly #sql: Record<
    "append" | "after" | "head" | "prunedThrough" | "markPruned" | "dropChunk",
    StatementSync
  >;
  readonly #pruneTimer: NodeJS.Timeout;
  #pruning: Promise<void> | undefined;
  #closed = false;

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
      markPruned: db.prepare(pruneStatements.markPruned),
      dropChunk: db.prepare(pruneStatements.dropChunk),
    };
    // Pruning is housekeeping: a failed run leaves the log longer until the next one succeeds,
    // and an unref'd timer never keeps the process alive.
    const pruneQuietly = () => void this.prune().catch(() => undefined);
    pruneQuietly();
    this.#pruneTimer = setInterval(pruneQuietly, Math.min(60_000, this.#retentionMs));
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

  /**
   * Drops changes older than the retention window and remembers how far it
   * dropped, a chunk per transaction with the event loop free in between.
   * Concurrent calls share the run in progress.
   */
  prune(): Promise<void> {
    this.#pruning ??= this.#pruneChunks().finally(() => {
      this.#pruning = undefined;
    });
    return this.#pruning;
  }

  async #pruneChunks(): Promise<void> {
    const cutoff = this.#clock() - this.#retentionMs;
    for (;;) {
      if (this.#closed) return;
      const dropped = inTransaction(this.#db, () => {
        // The watermark first: a resume token in the chunk must read as expired once it is gone.
        this.#sql.markPruned.run({ cutoff });
        return Number(this.#sql.dropChunk.run({ cutoff }).changes);
      });
      if (dropped < pruneChunk) return;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#pruneTimer);
    await this.#pruning?.catch(() => undefined);
    this.#listeners.clear();
  }
}
