import { types } from "cassandra-driver";
import type { TrackedMessage } from "../../domain/model.js";
import { chunk } from "../chunk.js";
import { mapConcurrently } from "../map-concurrently.js";
import type { Params } from "./cql-session.js";
import {
  type CqlContext,
  optionalNumber,
  read,
  toNumber,
  ttlSeconds,
  write,
} from "./cql-values.js";

/**
 * Receipt records per read and per single-partition batch: SendReceipts
 * takes at most 100 ids, so one call is one read and one batch.
 */
const receiptBatch = 100;

/** What a receipt's record holds; a record written by schema version 1 has no read time. */
export interface ReceiptRecord {
  readonly readAt: number | undefined;
  readonly writeTs: number;
}

export interface NewRecord {
  readonly message: TrackedMessage;
  readonly readAt: number;
  readonly writeTs: number;
}

/**
 * Each receipt's record in receipts_by_reader (one partition per reader and conversation):
 * whether the reader has one for a message tells whether a receipt is new, and its write time
 * is the one its readers row is written at, so a rewrite changes nothing.
 */
export class CassandraReceiptRecords {
  readonly #context: CqlContext;
  readonly #cql: ReturnType<typeof statements>;

  constructor(context: CqlContext) {
    this.#context = context;
    this.#cql = statements(context.keyspace);
  }

  /** The reader's receipt records for these messages, by message id: one read per conversation. */
  async find(
    tenant: string,
    readerId: string,
    messages: readonly TrackedMessage[],
  ): Promise<Map<string, ReceiptRecord>> {
    const { session, long, concurrency } = this.#context;
    const records = new Map<string, ReceiptRecord>();
    const byConversation = Map.groupBy(messages, (m) => m.conversationId);
    await mapConcurrently([...byConversation], concurrency, async ([conversationId, of]) => {
      for (const part of chunk(of, receiptBatch)) {
        const keys = part.map((m) => new types.Tuple(long(m.sentAt), m.messageId));
        const result = await session.execute(
          this.#cql.receiptRecords,
          [tenant, conversationId, readerId, keys],
          read,
        );
        for (const row of result.rows) {
          records.set(row.get("message_id") as string, {
            readAt: optionalNumber(row.get("read_at")),
            writeTs: toNumber(row.get("write_ts")),
          });
        }
      }
    });
    return records;
  }

  /** The records of new receipts, one single-partition batch per conversation. */
  #batches(
    tenant: string,
    readerId: string,
    receipts: readonly NewRecord[],
  ): { cql: string; params: Params }[][] {
    const { long } = this.#context;
    const byConversation = Map.groupBy(receipts, (r) => r.message.conversationId);
    return [...byConversation].flatMap(([conversationId, of]) =>
      chunk(
        of.map(({ message, readAt, writeTs }) => ({
          cql: this.#cql.insertReceiptRecord,
          params: [
            tenant,
            conversationId,
            readerId,
            long(message.sentAt),
            message.messageId,
            long(readAt),
            long(writeTs),
            long(writeTs),
            ttlSeconds(message.expiresAt, this.#context.clock()),
          ],
        })),
        receiptBatch,
      ),
    );
  }

  /** Writes the records of new receipts, one single-partition batch per conversation. */
  async write(tenant: string, readerId: string, fresh: readonly NewRecord[]): Promise<void> {
    const { session, concurrency } = this.#context;
    await mapConcurrently(this.#batches(tenant, readerId, fresh), concurrency, (batch) =>
      session.batch(batch, { ...write, logged: false }),
    );
  }
}

function statements(keyspace: string) {
  const t = (table: string) => `${keyspace}.${table}`;
  return {
    receiptRecords: `SELECT message_id, read_at, write_ts FROM ${t("receipts_by_reader")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? AND (sent_at, message_id) IN ?`,
    insertReceiptRecord: `INSERT INTO ${t("receipts_by_reader")}
      (tenant, conversation_id, reader_id, sent_at, message_id, read_at, write_ts)
      VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?`,
  };
}
