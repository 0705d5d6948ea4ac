import type { DatabaseSync, StatementSync } from "node:sqlite";
import { erasedUserId } from "../../domain/model.js";
import type {
  Chunk,
  Cursor,
  ErasureRecord,
  UserDataRecord,
  UserDataStore,
} from "../user-data-store.js";
import { SqliteUserDataExport } from "./sqlite-user-data-export.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

/**
 * One user's data by user (the indexes of schema version 4) and each erasure's progress
 * (user_erasures). A chunk is one transaction that removes the first `limit` rows left, so a
 * step needs no position: it goes on while chunks come back full.
 */
export class SqliteUserData implements UserDataStore {
  readonly #writes: SqliteWriteBatcher;
  readonly #sql: ReturnType<typeof prepareStatements>;
  readonly #export: SqliteUserDataExport;

  constructor(db: DatabaseSync, writes: SqliteWriteBatcher) {
    this.#writes = writes;
    this.#sql = prepareStatements(db);
    this.#export = new SqliteUserDataExport(db);
  }

  async erasureOf(tenant: string, userId: string): Promise<ErasureRecord | undefined> {
    const row = this.#sql.getErasure.get(tenant, userId) as { record: string } | undefined;
    return row === undefined ? undefined : (JSON.parse(row.record) as ErasureRecord);
  }

  saveErasure(
    tenant: string,
    userId: string,
    record: ErasureRecord,
    expectedVersion: number | undefined,
  ): Promise<boolean> {
    return this.#writes.write(() => {
      const row = this.#sql.getErasure.get(tenant, userId) as { version: number } | undefined;
      if (row?.version !== expectedVersion) return false;
      this.#sql.putErasure.run(tenant, userId, record.version, JSON.stringify(record));
      return true;
    });
  }

  eraseHorizonsOf(tenant: string, userId: string, _cursor: Cursor, limit: number) {
    return this.#chunk(limit, () => {
      const rows = this.#sql.horizonsOf.all(tenant, userId, limit) as unknown as {
        conversation_id: string;
      }[];
      for (const row of rows) this.#sql.deleteHorizon.run(tenant, row.conversation_id, userId);
      return rows.length;
    });
  }

  eraseHorizonSetTimesOf(tenant: string, userId: string, _cursor: Cursor, limit: number) {
    return this.#chunk(limit, () => {
      const rows = this.#sql.horizonSetsOf.all(tenant, userId, limit) as unknown as {
        conversation_id: string;
        read_up_to: number;
      }[];
      for (const row of rows) {
        this.#sql.deleteHorizonSet.run(tenant, row.conversation_id, userId, row.read_up_to);
      }
      return rows.length;
    });
  }

  eraseReceiptsOf(tenant: string, userId: string, _cursor: Cursor, limit: number) {
    return this.#chunk(limit, () => {
      const rows = this.#sql.receiptsOf.all(tenant, userId, limit) as unknown as {
        message_id: string;
      }[];
      for (const { message_id } of rows) {
        this.#sql.deleteReceipt.run(tenant, message_id, userId);
        this.#sql.lowerReadCount.run(tenant, message_id);
      }
      return rows.length;
    });
  }

  eraseMembershipsOf(tenant: string, userId: string, _cursor: Cursor, limit: number) {
    return this.#chunk(limit, () => {
      const rows = this.#sql.membershipsOf.all(tenant, userId, limit) as unknown as {
        group_id: string;
        joined_at: number;
        left_at: number | null;
      }[];
      for (const row of rows) {
        this.#sql.deleteMembership.run(tenant, row.group_id, userId, row.joined_at);
        // Counts before the group's latest change are counted from the intervals, which no
        // longer hold the user; the running total from it on still does while the user is in.
        if (row.left_at === null) this.#sql.lowerMemberCount.run(tenant, row.group_id);
      }
      return rows.length;
    });
  }

  pseudonymiseMessagesOf(tenant: string, userId: string, _cursor: Cursor, limit: number) {
    return this.#chunk(limit, () => {
      const rows = this.#sql.messagesOf.all({ tenant, user: userId, limit }) as unknown as {
        message_id: string;
        conversation_id: string;
        conversation_type: string;
      }[];
      for (const row of rows) {
        this.#sql.pseudonymiseMessage.run({
          tenant,
          user: userId,
          erased: erasedUserId,
          message: row.message_id,
        });
        if (row.conversation_type === "c2c") {
          this.#sql.pseudonymiseConversation.run({
            tenant,
            user: userId,
            erased: erasedUserId,
            conversation: row.conversation_id,
          });
        }
      }
      return rows.length;
    });
  }

  /** The indexes go with the rows they index. */
  async eraseUserIndexOf(): Promise<Chunk> {
    return { removed: 0, cursor: undefined };
  }

  exportUserData(tenant: string, userId: string): AsyncIterable<UserDataRecord> {
    return this.#export.records(tenant, userId);
  }

  /** One chunk in one transaction; a chunk that came back full may have more behind it. */
  async #chunk(limit: number, work: () => number): Promise<Chunk> {
    const removed = await this.#writes.write(work);
    return { removed, cursor: removed < limit ? undefined : "" };
  }
}

function prepareStatements(db: DatabaseSync) {
  const q = (sql: string): StatementSync => db.prepare(sql);
  return {
    getErasure: q("SELECT version, record FROM user_erasures WHERE tenant = ? AND user_id = ?"),
    putErasure: q(
      `INSERT INTO user_erasures (tenant, user_id, version, record) VALUES (?, ?, ?, ?)
       ON CONFLICT (tenant, user_id) DO UPDATE SET version = excluded.version, record = excluded.record`,
    ),
    horizonsOf: q(
      "SELECT conversation_id FROM horizons WHERE tenant = ? AND reader_id = ? LIMIT ?",
    ),
    deleteHorizon: q(
      "DELETE FROM horizons WHERE tenant = ? AND conversation_id = ? AND reader_id = ?",
    ),
    horizonSetsOf: q(
      "SELECT conversation_id, read_up_to FROM horizon_sets WHERE tenant = ? AND reader_id = ? LIMIT ?",
    ),
    deleteHorizonSet: q(
      `DELETE FROM horizon_sets
       WHERE tenant = ? AND conversation_id = ? AND reader_id = ? AND read_up_to = ?`,
    ),
    receiptsOf: q("SELECT message_id FROM receipts WHERE tenant = ? AND reader_id = ? LIMIT ?"),
    deleteReceipt: q("DELETE FROM receipts WHERE tenant = ? AND message_id = ? AND reader_id = ?"),
    lowerReadCount: q(
      "UPDATE messages SET read_count = read_count - 1 WHERE tenant = ? AND message_id = ?",
    ),
    membershipsOf: q(
      "SELECT group_id, joined_at, left_at FROM memberships WHERE tenant = ? AND user_id = ? LIMIT ?",
    ),
    deleteMembership: q(
      "DELETE FROM memberships WHERE tenant = ? AND group_id = ? AND user_id = ? AND joined_at = ?",
    ),
    lowerMemberCount: q(
      "UPDATE groups SET member_count = member_count - 1 WHERE tenant = ? AND group_id = ?",
    ),
    messagesOf: q(
      `SELECT message_id, conversation_id, conversation_type FROM messages
         WHERE tenant = $tenant AND sender_id = $user
       UNION
       SELECT message_id, conversation_id, conversation_type FROM messages
         WHERE tenant = $tenant AND receiver_id = $user
       LIMIT $limit`,
    ),
    pseudonymiseMessage: q(
      `UPDATE messages SET
         sender_id = CASE WHEN sender_id = $user THEN $erased ELSE sender_id END,
         receiver_id = CASE WHEN receiver_id = $user THEN $erased ELSE receiver_id END
       WHERE tenant = $tenant AND message_id = $message`,
    ),
    pseudonymiseConversation: q(
      `UPDATE conversations SET
         participant_a = CASE WHEN participant_a = $user THEN $erased ELSE participant_a END,
         participant_b = CASE WHEN participant_b = $user THEN $erased ELSE participant_b END
       WHERE tenant = $tenant AND conversation_id = $conversation`,
    ),
  };
}
