import type { DatabaseSync, StatementSync } from "node:sqlite";
import { entriesOfMessage } from "./sqlite-change-feed.js";
import { removals, removeMessage } from "./sqlite-message-deletions.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

/** Rows one pruning transaction removes at most, so that it never holds other writes long. */
const defaultChunkRows = 1_000;

export interface SqliteRetentionOptions {
  readonly clock: () => number;
  /** Interval of the pruning job; 0 runs none (tests call prune()). */
  readonly everyMs: number;
  readonly chunkRows?: number;
}

/**
 * The tenants' retention on the embedded store: a job that removes, every minute, the messages
 * past their `expires_at` with their receipts, outbox and change-log entries, the deletion
 * markers and horizon notes past theirs. Each chunk is one transaction of the write batcher of
 * at most `chunkRows` rows, with the event loop free in between, so receipts keep flowing.
 * Reads already hide expired messages (sqlite-messages.ts): pruning only frees the space.
 */
export class SqliteRetention {
  readonly #writes: SqliteWriteBatcher;
  readonly #clock: () => number;
  readonly #chunkRows: number;
  readonly #sql: ReturnType<typeof removals> &
    Record<"expired" | "dropLogged" | "dropMarkers" | "dropNotes", StatementSync>;
  readonly #timer: NodeJS.Timeout | undefined;
  #pruning: Promise<number> | undefined;
  #closed = false;

  constructor(db: DatabaseSync, writes: SqliteWriteBatcher, options: SqliteRetentionOptions) {
    this.#writes = writes;
    this.#clock = options.clock;
    this.#chunkRows = options.chunkRows ?? defaultChunkRows;
    const withoutRowid = (table: string, key: string) =>
      `DELETE FROM ${table} WHERE (${key}) IN (SELECT ${key} FROM ${table}
         WHERE expires_at IS NOT NULL AND expires_at <= $now LIMIT $limit)`;
    this.#sql = {
      ...removals(db),
      expired: db.prepare(
        `SELECT tenant, message_id FROM messages
         WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?`,
      ),
      dropLogged: db.prepare(
        `DELETE FROM change_log WHERE (tenant, position) IN (${entriesOfMessage} LIMIT $limit)`,
      ),
      dropMarkers: db.prepare(withoutRowid("deleted_messages", "tenant, message_id")),
      dropNotes: db.prepare(
        withoutRowid("horizon_sets", "tenant, conversation_id, reader_id, read_up_to"),
      ),
    };
    if (options.everyMs > 0) {
      // Housekeeping: a failed run leaves rows a minute longer, and the timer never holds the process.
      this.#timer = setInterval(() => void this.prune().catch(() => undefined), options.everyMs);
      this.#timer.unref();
    }
  }

  /** Removes everything past its retention, a chunk per transaction; resolves with the rows removed. */
  prune(): Promise<number> {
    this.#pruning ??= this.#pruneChunks().finally(() => {
      this.#pruning = undefined;
    });
    return this.#pruning;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#pruning?.catch(() => undefined);
  }

  async #pruneChunks(): Promise<number> {
    const now = this.#clock();
    let removed = 0;
    for (;;) {
      if (this.#closed) return removed;
      const rows = await this.#writes.write(() => this.#pruneChunk(now));
      removed += rows;
      if (rows < this.#chunkRows) return removed;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** One transaction: expired messages (receipts first), then markers and horizon notes. */
  #pruneChunk(now: number): number {
    let removed = 0;
    const budget = () => this.#chunkRows - removed;
    const expired = this.#sql.expired.all(now, this.#chunkRows) as unknown as {
      tenant: string;
      message_id: string;
    }[];
    for (const { tenant, message_id } of expired) {
      if (budget() <= 0) break;
      // Its log entries first, then its receipts, then the message: it is found again next
      // chunk until all are gone.
      const limit = budget();
      const logged = Number(
        this.#sql.dropLogged.run({ tenant, message: message_id, limit }).changes,
      );
      removed += logged;
      if (logged < limit) removed += removeMessage(this.#sql, tenant, message_id, budget());
    }
    for (const statement of [this.#sql.dropMarkers, this.#sql.dropNotes]) {
      if (budget() > 0) removed += Number(statement.run({ now, limit: budget() }).changes);
    }
    return removed;
  }
}
