import type { DatabaseSync, StatementSync } from "node:sqlite";
import { type ConversationType, erasedUserId, type TrackedMessage } from "../../domain/model.js";
import type {
  Chunk,
  Cursor,
  ErasureRecord,
  UserDataRecord,
  UserDataStore,
} from "../user-data-store.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

/** Rows read per page of an export. */
const exportPage = 1_000;

/**
 * One user's data by user (the indexes of schema version 4) and each erasure's progress
 * (user_erasures). A chunk is one transaction that removes the first `limit` rows left, so a
 * step needs no position: it goes on while chunks come back full.
 */
export class SqliteUserData implements UserDataStore {
  readonly #writes: SqliteWriteBatcher;
  readonly #sql: ReturnType<typeof prepareStatements>;

  constructor(db: DatabaseSync, writes: SqliteWriteBatcher) {
    this.#writes = writes;
    this.#sql = prepareStatements(db);
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

  async *exportUserData(tenant: string, userId: string): AsyncIterable<UserDataRecord> {
    const sql = this.#sql;
    yield* pages(
      (last: { message_id: string } | undefined) =>
        sql.exportReceipts.all(tenant, userId, last?.message_id ?? "", exportPage) as unknown as {
          conversation_id: string;
          message_id: string;
          read_at: number;
        }[],
      (row) => ({
        kind: "receipt",
        conversationId: row.conversation_id,
        messageId: row.message_id,
        readAt: row.read_at,
      }),
    );
    yield* pages(
      (last: { conversation_id: string } | undefined) =>
        sql.exportHorizons.all(
          tenant,
          userId,
          last?.conversation_id ?? "",
          exportPage,
        ) as unknown as {
          conversation_id: string;
          read_up_to: number;
        }[],
      (row) => ({ kind: "horizon", conversationId: row.conversation_id, readUpTo: row.read_up_to }),
    );
    yield* pages(
      (last: { conversation_id: string; read_up_to: number } | undefined) =>
        sql.exportHorizonSets.all(
          tenant,
          userId,
          last?.conversation_id ?? "",
          last?.read_up_to ?? -1,
          exportPage,
        ) as unknown as { conversation_id: string; read_up_to: number; set_at: number }[],
      (row) => ({
        kind: "horizon_set",
        conversationId: row.conversation_id,
        readUpTo: row.read_up_to,
        setAt: row.set_at,
      }),
    );
    yield* pages(
      (last: { group_id: string; joined_at: number } | undefined) =>
        sql.exportMemberships.all(
          tenant,
          userId,
          last?.group_id ?? "",
          last?.joined_at ?? -1,
          exportPage,
        ) as unknown as { group_id: string; joined_at: number; left_at: number | null }[],
      (row) => ({
        kind: "membership",
        groupId: row.group_id,
        joinedAt: row.joined_at,
        leftAt: row.left_at ?? undefined,
      }),
    );
    for (const statement of [sql.exportMessagesSent, sql.exportMessagesReceived]) {
      yield* pages(
        (last: MessageRow | undefined) =>
          statement.all(
            tenant,
            userId,
            last?.message_id ?? "",
            exportPage,
          ) as unknown as MessageRow[],
        (row) => ({ kind: "message", message: messageFromRow(row) }),
      );
    }
  }

  /** One chunk in one transaction; a chunk that came back full may have more behind it. */
  async #chunk(limit: number, work: () => number): Promise<Chunk> {
    const removed = await this.#writes.write(work);
    return { removed, cursor: removed < limit ? undefined : "" };
  }
}

interface MessageRow {
  conversation_id: string;
  conversation_type: string;
  message_id: string;
  sender_id: string;
  sent_at: number;
  receiver_id: string;
}

const messageFromRow = (row: MessageRow): TrackedMessage => ({
  conversationId: row.conversation_id,
  conversationType: row.conversation_type as ConversationType,
  messageId: row.message_id,
  senderId: row.sender_id,
  sentAt: row.sent_at,
  receiverId: row.receiver_id,
});

/** Keyset pages: each page read after the last row of the previous one, never one long read. */
async function* pages<Row>(
  page: (last: Row | undefined) => Row[],
  record: (row: Row) => UserDataRecord,
): AsyncIterable<UserDataRecord> {
  let last: Row | undefined;
  for (;;) {
    const rows = page(last);
    for (const row of rows) yield record(row);
    if (rows.length < exportPage) return;
    last = rows.at(-1);
  }
}

function prepareStatements(db: DatabaseSync) {
  const q = (sql: string): StatementSync => db.prepare(sql);
  const messageColumns =
    "conversation_id, conversation_type, message_id, sender_id, sent_at, receiver_id";
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
    exportReceipts: q(
      `SELECT conversation_id, message_id, read_at FROM receipts
       WHERE tenant = ? AND reader_id = ? AND message_id > ? ORDER BY message_id LIMIT ?`,
    ),
    exportHorizons: q(
      `SELECT conversation_id, read_up_to FROM horizons
       WHERE tenant = ? AND reader_id = ? AND conversation_id > ? ORDER BY conversation_id LIMIT ?`,
    ),
    exportHorizonSets: q(
      `SELECT conversation_id, read_up_to, set_at FROM horizon_sets
       WHERE tenant = ? AND reader_id = ? AND (conversation_id, read_up_to) > (?, ?)
       ORDER BY conversation_id, read_up_to LIMIT ?`,
    ),
    exportMemberships: q(
      `SELECT group_id, joined_at, left_at FROM memberships
       WHERE tenant = ? AND user_id = ? AND (group_id, joined_at) > (?, ?)
       ORDER BY group_id, joined_at LIMIT ?`,
    ),
    exportMessagesSent: q(
      `SELECT ${messageColumns} FROM messages
       WHERE tenant = ? AND sender_id = ? AND message_id > ? ORDER BY message_id LIMIT ?`,
    ),
    exportMessagesReceived: q(
      `SELECT ${messageColumns} FROM messages
       WHERE tenant = ? AND receiver_id = ? AND message_id > ? ORDER BY message_id LIMIT ?`,
    ),
  };
}
