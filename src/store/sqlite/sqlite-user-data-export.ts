import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { UserDataRecord } from "../user-data-store.js";
import { type MessageRow, messageColumns, messageFromRow } from "./sqlite-messages.js";

/** Rows read per page of an export. */
const exportPage = 1_000;

/** ExportUserData on the embedded store: each kind of row by user, through its index, a page at a time. */
export class SqliteUserDataExport {
  readonly #sql: ReturnType<typeof prepareStatements>;

  constructor(db: DatabaseSync) {
    this.#sql = prepareStatements(db);
  }

  async *records(tenant: string, userId: string): AsyncIterable<UserDataRecord> {
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
}

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
  return {
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
