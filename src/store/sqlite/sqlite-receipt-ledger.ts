import type { DatabaseSync, StatementSync } from "node:sqlite";
import { LRUCache } from "lru-cache";
import { pendingReceipt, type ReadMember, type TrackedMessage } from "../../domain/model.js";
import { chunk } from "../chunk.js";
import type { NewReceipt, ReceiptLedger, RecordedReceipt } from "../receipt-store.js";
import type { SqliteOutbox } from "./sqlite-outbox.js";
import { keepExact, memoryKey, type OtherConnectionsCommits } from "./sqlite-row-changes.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

/** SQLite caps bound parameters per statement. */
const maxInList = 500;

/**
 * Receipts (table receipts) and each message's read count (messages.read_count), changed
 * in the transaction that inserts or deletes the receipt, so that it is exact.
 */
export class SqliteReceiptLedger implements Omit<ReceiptLedger, "listFirstPages"> {
  readonly #writes: SqliteWriteBatcher;
  readonly #outbox: SqliteOutbox;
  readonly #sql: ReturnType<typeof prepareStatements>;
  readonly #db: DatabaseSync;
  readonly #readCountStatements = new Map<number, StatementSync>();
  /**
   * Read counts read before, by tenant and message id: every GetReceipts reads them, and a
   * message is read about far more often than read. Any statement on this connection that
   * inserts, deletes or changes the count of a message drops it at once (a trigger, inside
   * the write); another connection's commit drops all.
   */
  readonly #counts = new LRUCache<string, number>({ max: 100_000 });
  readonly #otherCommits: OtherConnectionsCommits;

  constructor(db: DatabaseSync, writes: SqliteWriteBatcher, outbox: SqliteOutbox) {
    this.#db = db;
    this.#writes = writes;
    this.#outbox = outbox;
    this.#sql = prepareStatements(db);
    this.#otherCommits = keepExact(
      db,
      "read_count",
      [
        {
          table: "messages",
          keyColumn: "message_id",
          updateOf: ["tenant", "message_id", "read_count"],
        },
      ],
      this.#counts,
    );
  }

  async insertReceipts(
    tenant: string,
    readerId: string,
    receipts: readonly NewReceipt[],
  ): Promise<RecordedReceipt[]> {
    return this.#writes.write(() =>
      receipts.map(({ message, readAt }): RecordedReceipt => {
        // In the transaction: a message deleted since the caller read it gets no receipt.
        const stored = this.#sql.readCount.get(tenant, message.messageId);
        if (stored === undefined) {
          return { messageId: message.messageId, inserted: false, readCount: 0, deleted: true };
        }
        const inserted =
          this.#sql.insertReceipt.run(
            tenant,
            message.messageId,
            readerId,
            readAt,
            message.conversationId,
            message.sentAt,
          ).changes > 0;
        if (inserted) {
          this.#sql.addToReadCount.run(1, tenant, message.messageId);
          this.#outbox.keep(pendingReceipt(tenant, readerId, message, readAt));
        }
        const { read_count } = this.#sql.readCount.get(tenant, message.messageId) as {
          read_count: number;
        };
        return { messageId: message.messageId, inserted, readCount: read_count };
      }),
    );
  }

  async readCounts(
    tenant: string,
    messages: readonly TrackedMessage[],
  ): Promise<Map<string, number>> {
    this.#otherCommits.look();
    const counts = new Map<string, number>();
    const unknown: string[] = [];
    for (const { messageId } of messages) {
      if (counts.has(messageId)) continue;
      const known = this.#counts.get(memoryKey(tenant, messageId));
      counts.set(messageId, known ?? 0);
      if (known === undefined) unknown.push(messageId);
    }
    // Inside a transaction the rows may yet be rolled back, which no trigger reports.
    const remember = !this.#db.isTransaction;
    // One statement per call rather than one per message: GetReceipts asks for up to 100.
    for (const ids of chunk(unknown, maxInList)) {
      const rows = this.#readCountsOf(ids.length).all(tenant, ...ids) as unknown as {
        message_id: string;
        read_count: number;
      }[];
      for (const row of rows) {
        counts.set(row.message_id, row.read_count);
        // Only messages found: one not tracked yet may be tracked by the next call.
        if (remember) this.#counts.set(memoryKey(tenant, row.message_id), row.read_count);
      }
    }
    return counts;
  }

  /** Prepared once per list length. */
  #readCountsOf(count: number): StatementSync {
    let statement = this.#readCountStatements.get(count);
    if (statement === undefined) {
      statement = this.#db.prepare(
        `SELECT message_id, read_count FROM messages WHERE tenant = ? AND message_id IN (${Array.from({ length: count }, () => "?").join(", ")})`,
      );
      this.#readCountStatements.set(count, statement);
    }
    return statement;
  }

  async listReaders(
    tenant: string,
    message: TrackedMessage,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<ReadMember[]> {
    const rows = this.#sql.listReaders.all(
      tenant,
      message.messageId,
      afterUserId ?? "",
      limit,
    ) as unknown as { reader_id: string; read_at: number }[];
    return rows.map((row) => ({ userId: row.reader_id, readAt: row.read_at }));
  }

  async receiverReadTimes(
    tenant: string,
    messages: readonly TrackedMessage[],
  ): Promise<Map<string, number>> {
    const times = new Map<string, number>();
    for (const { messageId, receiverId } of messages) {
      const row = this.#sql.readAt.get(tenant, messageId, receiverId) as
        | { read_at: number }
        | undefined;
      if (row !== undefined) times.set(messageId, row.read_at);
    }
    return times;
  }

  async hasRead(
    tenant: string,
    readerId: string,
    messageIds: readonly string[],
  ): Promise<Set<string>> {
    const read = new Set<string>();
    for (const messageId of messageIds) {
      if (this.#sql.hasReceipt.get(tenant, messageId, readerId) !== undefined) read.add(messageId);
    }
    return read;
  }

  /** Nothing is derived apart from the rows: a receipt's transaction stored all of it. */
  settleReceipts(tenant: string, readerId: string, messageIds: readonly string[]) {
    return this.hasRead(tenant, readerId, messageIds);
  }

  async deleteReceiptsFrom(
    tenant: string,
    groupId: string,
    userId: string,
    fromSentAt: number,
  ): Promise<string[]> {
    return this.#writes.write(() => {
      const doomed = this.#sql.receiptsOfReaderFrom.all(
        tenant,
        groupId,
        userId,
        fromSentAt,
      ) as unknown as { message_id: string }[];
      for (const { message_id } of doomed) {
        this.#sql.deleteReceipt.run(tenant, message_id, userId);
        this.#sql.addToReadCount.run(-1, tenant, message_id);
      }
      return doomed.map((row) => row.message_id);
    });
  }
}

function prepareStatements(db: DatabaseSync) {
  const q = (sql: string): StatementSync => db.prepare(sql);
  return {
    insertReceipt: q(
      `INSERT OR IGNORE INTO receipts (tenant, message_id, reader_id, read_at, conversation_id, sent_at)
       VALUES (?, ?, ?, ?, ?, ?)`,
    ),
    deleteReceipt: q("DELETE FROM receipts WHERE tenant = ? AND message_id = ? AND reader_id = ?"),
    addToReadCount: q(
      "UPDATE messages SET read_count = read_count + ? WHERE tenant = ? AND message_id = ?",
    ),
    readCount: q("SELECT read_count FROM messages WHERE tenant = ? AND message_id = ?"),
    listReaders: q(
      `SELECT reader_id, read_at FROM receipts
       WHERE tenant = ? AND message_id = ? AND reader_id > ? ORDER BY reader_id LIMIT ?`,
    ),
    readAt: q("SELECT read_at FROM receipts WHERE tenant = ? AND message_id = ? AND reader_id = ?"),
    hasReceipt: q("SELECT 1 FROM receipts WHERE tenant = ? AND message_id = ? AND reader_id = ?"),
    receiptsOfReaderFrom: q(
      `SELECT message_id FROM receipts
       WHERE tenant = ? AND conversation_id = ? AND reader_id = ? AND sent_at >= ?`,
    ),
  };
}
