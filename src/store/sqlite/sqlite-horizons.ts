import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { HorizonStore } from "../receipt-store.js";
import type { SqliteOutbox } from "./sqlite-outbox.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

/** Read horizons (table horizons) and when each was set (horizon_sets). */
export class SqliteHorizons implements HorizonStore {
  readonly #writes: SqliteWriteBatcher;
  readonly #outbox: SqliteOutbox;
  readonly #sql: ReturnType<typeof prepareStatements>;

  constructor(db: DatabaseSync, writes: SqliteWriteBatcher, outbox: SqliteOutbox) {
    this.#writes = writes;
    this.#outbox = outbox;
    this.#sql = prepareStatements(db);
  }

  async getHorizon(
    tenant: string,
    conversationId: string,
    readerId: string,
  ): Promise<number | undefined> {
    return this.#horizonOf(tenant, conversationId, readerId);
  }

  async advanceHorizon(
    tenant: string,
    conversationId: string,
    readerId: string,
    upTo: number,
    at: number,
  ): Promise<{ readonly previous: number | undefined; readonly current: number }> {
    return this.#writes.write(() => {
      const previous = this.#horizonOf(tenant, conversationId, readerId);
      const current = Math.max(previous ?? upTo, upTo);
      if (current !== previous) {
        this.#sql.putHorizon.run(tenant, conversationId, readerId, current);
        this.#outbox.keep({
          kind: "horizon",
          tenant,
          conversationId,
          readerId,
          readUpTo: current,
          at,
        });
      }
      return { previous, current };
    });
  }

  async noteHorizonSet(
    tenant: string,
    conversationId: string,
    readerId: string,
    readUpTo: number,
    setAt: number,
    expiresAt?: number,
  ): Promise<void> {
    await this.#writes.write(() => {
      this.#sql.noteHorizonSet.run(
        tenant,
        conversationId,
        readerId,
        readUpTo,
        setAt,
        expiresAt ?? null,
      );
    });
  }

  async horizonSetTimes(
    tenant: string,
    conversationId: string,
    readerId: string,
    times: readonly number[],
  ): Promise<(number | undefined)[]> {
    return times.map((at) => {
      const row = this.#sql.horizonSetAt.get(tenant, conversationId, readerId, at) as
        | { set_at: number }
        | undefined;
      return row?.set_at;
    });
  }

  async horizonsFrom(
    tenant: string,
    conversationId: string,
    at: number,
  ): Promise<{ readonly readerId: string; readonly readUpTo: number }[]> {
    const rows = this.#sql.horizonsFrom.all(tenant, conversationId, at) as unknown as {
      reader_id: string;
      read_up_to: number;
    }[];
    return rows.map((row) => ({ readerId: row.reader_id, readUpTo: row.read_up_to }));
  }

  #horizonOf(tenant: string, conversationId: string, readerId: string): number | undefined {
    const row = this.#sql.getHorizon.get(tenant, conversationId, readerId) as
      | { read_up_to: number }
      | undefined;
    return row?.read_up_to;
  }
}

function prepareStatements(db: DatabaseSync) {
  const q = (sql: string): StatementSync => db.prepare(sql);
  return {
    getHorizon: q(
      "SELECT read_up_to FROM horizons WHERE tenant = ? AND conversation_id = ? AND reader_id = ?",
    ),
    putHorizon: q(
      `INSERT INTO horizons (tenant, conversation_id, reader_id, read_up_to) VALUES (?, ?, ?, ?)
       ON CONFLICT (tenant, conversation_id, reader_id) DO UPDATE SET read_up_to = excluded.read_up_to`,
    ),
    noteHorizonSet: q(
      `INSERT OR IGNORE INTO horizon_sets
       (tenant, conversation_id, reader_id, read_up_to, set_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
    ),
    horizonSetAt: q(
      `SELECT set_at FROM horizon_sets WHERE tenant = ? AND conversation_id = ? AND reader_id = ?
         AND read_up_to >= ? ORDER BY read_up_to LIMIT 1`,
    ),
    horizonsFrom: q(
      "SELECT reader_id, read_up_to FROM horizons WHERE tenant = ? AND conversation_id = ? AND read_up_to >= ?",
    ),
  };
}
