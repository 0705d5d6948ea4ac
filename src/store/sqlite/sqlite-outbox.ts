import type { DatabaseSync, StatementSync } from "node:sqlite";
import { type PendingChange, pendingChangeTime } from "../../domain/model.js";
import { pendingChangeKey } from "../pending-change-key.js";
import type { OutboxStore } from "../receipt-store.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

/** The embedded outbox (table outbox): kept in the same transaction as the fact it announces. */
export class SqliteOutbox implements OutboxStore {
  readonly #writes: SqliteWriteBatcher;
  readonly #sql: Record<"keep" | "pendingBefore" | "clear", StatementSync>;

  constructor(db: DatabaseSync, writes: SqliteWriteBatcher) {
    this.#writes = writes;
    this.#sql = {
      keep: db.prepare(
        "INSERT OR REPLACE INTO outbox (tenant, key, payload, created_at) VALUES (?, ?, ?, ?)",
      ),
      pendingBefore: db.prepare(
        "SELECT payload FROM outbox WHERE created_at < ? ORDER BY created_at, tenant, key LIMIT ?",
      ),
      clear: db.prepare("DELETE FROM outbox WHERE tenant = ? AND key = ?"),
    };
  }

  /** Inside the write that stores the fact: the fact and its pending change commit together. */
  keep(change: PendingChange): void {
    const at = pendingChangeTime(change);
    this.#sql.keep.run(change.tenant, pendingChangeKey(change), JSON.stringify(change), at);
  }

  async pendingChanges(before: number, limit: number): Promise<PendingChange[]> {
    const rows = this.#sql.pendingBefore.all(before, limit) as unknown as { payload: string }[];
    return rows.map((row) => JSON.parse(row.payload) as PendingChange);
  }

  async clearPendingChanges(changes: readonly PendingChange[]): Promise<void> {
    if (changes.length === 0) return;
    await this.#writes.write(() => {
      for (const change of changes) this.#sql.clear.run(change.tenant, pendingChangeKey(change));
    });
  }
}
