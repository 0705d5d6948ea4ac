import type { DatabaseSync, StatementSync } from "node:sqlite";
import {
  type MessagesDeleted,
  type PositionedChange,
  type ReceiptChange,
  withReadCount,
} from "../../domain/model.js";
import { type ChangeFeed, ChangeLogExpiredError } from "../change-feed.js";
import { inTransaction } from "./sqlite-database.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

const positionPattern = /^\d{1,15}$/;

/** Rows dropped per pruning transaction, so that no single step holds the event loop for long. */
const pruneChunk = 2_000;

/**
 * The oldest changes before a cutoff, read through the age index only. Without
 * INDEXED BY, SQLite may answer max(position) by walking the log backwards from
 * the newest row, i.e. through every change still kept: a full scan per prune
 * that grew with the log (the 10-minute soak's latency spikes every 60 s).
 */
const expiredChunk = `SELECT tenant, position FROM change_log INDEXED BY change_log_by_age
  WHERE created_at < :cutoff ORDER BY created_at, tenant, position LIMIT ${pruneChunk}`;

/**
 * The log entries of a message's receipts, through the index of schema 4: without INDEXED BY,
 * SQLite may answer it from the primary key, i.e. by walking the tenant's whole log.
 */
export const entriesOfMessage = `SELECT tenant, position FROM change_log INDEXED BY change_log_by_message
  WHERE tenant = $tenant AND json_extract(payload, '$.receipt.message.messageId') = $message`;

/** The statements of one pruning step; exported so a test can check their query plans. */
export const pruneStatements = {
  markPruned: `UPDATE change_log_heads SET pruned_through = max(pruned_through, expired.through)
    FROM (SELECT tenant, max(position) AS through FROM (${expiredChunk}) GROUP BY tenant) AS expired
    WHERE change_log_heads.tenant = expired.tenant`,
  dropChunk: `DELETE FROM change_log WHERE (tenant, position) IN (${expiredChunk})`,
  dropAnnounced: `DELETE FROM announced WHERE (tenant, key) IN (SELECT tenant, key FROM announced
    INDEXED BY announced_by_age WHERE created_at < :cutoff LIMIT ${pruneChunk})`,
} as const;

/**
 * The embedded change feed: a SQLite table of changes with positions counted
 * per tenant, and in-process listeners. One process owns the file, so
 * in-process delivery reaches every watcher. What the log announced (see
 * ChangeFeed.publish) lives in the `announced` table and is pruned with it.
 */
export class SqliteChangeFeed implements ChangeFeed {
  readonly #db: DatabaseSync;
  /** Shared with the store on the same connection: one group commit for both. */
  readonly #writes: SqliteWriteBatcher;
  readonly #retentionMs: number;
  readonly #clock: () => number;
  readonly #listeners = new Map<string, Set<(change: PositionedChange) => void>>();
  readonly #sql: Record<
    | "nextPosition"
    | "append"
    | "after"
    | "head"
    | "prunedThrough"
    | "announced"
    | "announce"
    | "forget"
    | "dropLogged"
    | "markPruned"
    | "dropChunk"
    | "dropAnnounced",
    StatementSync
  >;
  readonly #pruneTimer: NodeJS.Timeout;
  #pruning: Promise<void> | undefined;
  #closed = false;

  constructor(
    db: DatabaseSync,
    writes: SqliteWriteBatcher,
    options: { retentionMs: number; clock?: () => number },
  ) {
    this.#db = db;
    this.#writes = writes;
    this.#retentionMs = options.retentionMs;
    this.#clock = options.clock ?? Date.now;
    this.#sql = {
      nextPosition: db.prepare(
        `INSERT INTO change_log_heads (tenant, head) VALUES (?, 1)
         ON CONFLICT (tenant) DO UPDATE SET head = head + 1 RETURNING head`,
      ),
      append: db.prepare(
        "INSERT INTO change_log (tenant, position, created_at, payload) VALUES (?, ?, ?, ?)",
      ),
      after: db.prepare(
        "SELECT position, payload FROM change_log WHERE tenant = ? AND position > ? ORDER BY position LIMIT ?",
      ),
      head: db.prepare("SELECT head FROM change_log_heads WHERE tenant = ?"),
      prunedThrough: db.prepare("SELECT pruned_through FROM change_log_heads WHERE tenant = ?"),
      announced: db.prepare("SELECT value FROM announced WHERE tenant = ? AND key = ?"),
      announce: db.prepare(
        "INSERT OR REPLACE INTO announced (tenant, key, value, created_at) VALUES (?, ?, ?, ?)",
      ),
      forget: db.prepare("DELETE FROM announced WHERE tenant = ? AND key = ?"),
      dropLogged: db.prepare(
        `DELETE FROM change_log WHERE (tenant, position) IN (${entriesOfMessage})`,
      ),
      markPruned: db.prepare(pruneStatements.markPruned),
      dropChunk: db.prepare(pruneStatements.dropChunk),
      dropAnnounced: db.prepare(pruneStatements.dropAnnounced),
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
    const positioned = await this.#writes.write(() =>
      changes.flatMap((proposed) => {
        const change = this.#announce(tenant, proposed, now);
        if (change === undefined) return [];
        const { head } = this.#sql.nextPosition.get(tenant) as { head: number };
        this.#sql.append.run(tenant, head, now, JSON.stringify(change));
        return [{ position: String(head), change }];
      }),
    );
    const listeners = this.#listeners.get(tenant);
    if (listeners !== undefined) {
      for (const change of positioned) for (const listener of listeners) listener(change);
    }
    return positioned;
  }

  async forgetReceipts(
    tenant: string,
    receipts: readonly { readonly messageId: string; readonly readerId: string }[],
  ): Promise<void> {
    if (receipts.length === 0) return;
    await this.#writes.write(() => {
      for (const { messageId, readerId } of receipts) {
        this.#sql.forget.run(tenant, announcedKey.receipt(messageId, readerId));
        this.#sql.forget.run(tenant, announcedKey.count(messageId));
      }
    });
  }

  async readAfter(tenant: string, position: string, limit: number): Promise<PositionedChange[]> {
    const after = Number(position);
    const pruned = this.#sql.prunedThrough.get(tenant) as { pruned_through: number } | undefined;
    if (after < (pruned?.pruned_through ?? 0)) {
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

  async head(tenant: string): Promise<string> {
    const row = this.#sql.head.get(tenant) as { head: number } | undefined;
    return String(row?.head ?? 0);
  }

  listen(tenant: string, listener: (change: PositionedChange) => void): () => void {
    // In process, the log is always reachable: nothing ever interrupts a listener.
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

  /** In process, a listener costs no read: the bell is a listener that ignores the change. */
  ring(tenant: string, bell: () => void): () => void {
    return this.listen(tenant, () => bell());
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
        const changes = Number(this.#sql.dropChunk.run({ cutoff }).changes);
        return Math.max(changes, Number(this.#sql.dropAnnounced.run({ cutoff }).changes));
      });
      if (dropped < pruneChunk) return;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** The change as the log will hold it, or undefined when the log already announced it. */
  #announce(tenant: string, change: ReceiptChange, now: number): ReceiptChange | undefined {
    const seen = (key: string) =>
      (this.#sql.announced.get(tenant, key) as { value: number } | undefined)?.value;
    const remember = (key: string, value: number) =>
      this.#sql.announce.run(tenant, key, value, now);
    if (change.kind === "deletion") return this.#announceDeletion(tenant, change, now);
    if (change.kind === "horizon") {
      const key = announcedKey.horizon(change.conversationId, change.readerId);
      if ((seen(key) ?? Number.NEGATIVE_INFINITY) >= change.readUpTo) return undefined;
      remember(key, change.readUpTo);
      return change;
    }
    const { messageId } = change.receipt.message;
    // A private read and a later shown one of the same reader are two announcements.
    const reader = change.private === true ? `p:${change.readerId}` : change.readerId;
    const receiptKey = announcedKey.receipt(messageId, reader);
    if (seen(receiptKey) !== undefined) return undefined;
    if (seen(announcedKey.deletion(messageId)) !== undefined) return undefined;
    remember(receiptKey, 1);
    const countKey = announcedKey.count(messageId);
    const count = Math.max(seen(countKey) ?? 0, change.receipt.readCount);
    remember(countKey, count);
    return withReadCount(change, count);
  }

  /**
   * A deletion is logged once per message, and the message's receipt entries leave the log in
   * the same transaction: a replay after it sees the deletion, never the receipts.
   */
  #announceDeletion(
    tenant: string,
    change: MessagesDeleted,
    now: number,
  ): MessagesDeleted | undefined {
    const messages = change.messages.filter(({ messageId }) => {
      const key = announcedKey.deletion(messageId);
      if (this.#sql.announced.get(tenant, key) !== undefined) return false;
      this.#sql.announce.run(tenant, key, 1, now);
      this.#sql.dropLogged.run({ tenant, message: messageId });
      return true;
    });
    return messages.length === 0 ? undefined : { ...change, messages };
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#pruneTimer);
    await this.#pruning?.catch(() => undefined);
    this.#listeners.clear();
  }
}

const announcedKey = {
  receipt: (messageId: string, readerId: string) => `r\u0000${messageId}\u0000${readerId}`,
  count: (messageId: string) => `n\u0000${messageId}`,
  horizon: (conversationId: string, readerId: string) =>
    `h\u0000${conversationId}\u0000${readerId}`,
  deletion: (messageId: string) => `d\u0000${messageId}`,
};
