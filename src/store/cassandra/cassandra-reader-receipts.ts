import type { types } from "cassandra-driver";
import { chunk } from "../chunk.js";
import { mapConcurrently } from "../map-concurrently.js";
import type { ReadCountCache } from "../read-count-cache.js";
import type { Params } from "./cql-session.js";
import { type CqlContext, optionalNumber, read, toNumber, write } from "./cql-values.js";

/** Receipt records deleted per single-partition batch (one reader, one conversation). */
const recordBatch = 100;

/**
 * One reader's receipts in one conversation taken as a whole: withdrawn when the reader turns
 * out not to have been a member (a membership rewrite), erased with the user, or exported.
 * Each receipt is two rows, its readers row (the one that counts) and its record in
 * receipts_by_reader; deletions go at a write time later than the receipt's own, so that no
 * rewrite of it (a retried SendReceipts) survives, and the record goes last, so that a retry
 * after a failure finds the rest again.
 */
export class CassandraReaderReceipts {
  readonly #context: CqlContext;
  readonly #cql: ReturnType<typeof statements>;
  readonly #cache: ReadCountCache | undefined;

  constructor(context: CqlContext, cache: ReadCountCache | undefined) {
    this.#context = context;
    this.#cql = statements(context.keyspace);
    this.#cache = cache;
  }

  /** Deletes the reader's receipts of messages sent at or after `fromSentAt`; returns their ids. */
  async deleteFrom(
    tenant: string,
    groupId: string,
    userId: string,
    fromSentAt: number,
  ): Promise<string[]> {
    const { session, long } = this.#context;
    const doomed = (
      await session.execute(
        this.#cql.receiptsOfReaderFrom,
        [tenant, groupId, userId, long(fromSentAt)],
        read,
      )
    ).rows;
    await mapConcurrently(doomed, this.#context.concurrency, (row) =>
      this.#deleteReceipt(tenant, groupId, userId, row),
    );
    return doomed.map((row) => row.get("message_id") as string);
  }

  /**
   * Deletes the first `limit` receipts of the reader in the conversation (an erasure);
   * returns how many there were.
   */
  async eraseReaderIn(
    tenant: string,
    conversationId: string,
    readerId: string,
    limit: number,
  ): Promise<number> {
    const doomed = (
      await this.#context.session.execute(
        this.#cql.receiptsOfReader,
        [tenant, conversationId, readerId, limit],
        read,
      )
    ).rows;
    // As #deleteReceipt does row by row, in three rounds: the readers rows (a partition each),
    // the cached counts at once, then the records, one partition, in batches.
    const { session, writeClock, concurrency, long } = this.#context;
    const times = doomed.map((row) =>
      Math.max(writeClock.nextMicros(), toNumber(row.get("write_ts")) + 1),
    );
    const ids = doomed.map((row) => row.get("message_id") as string);
    await mapConcurrently(ids, concurrency, (messageId, i) =>
      session.execute(this.#cql.deleteReader, [tenant, messageId, readerId], {
        ...write,
        timestamp: times[i] as number,
      }),
    );
    await this.#cache?.readersDeleted(tenant, ids);
    const records = doomed.map((row, i) => ({
      cql: this.#cql.deleteReceiptByReaderAt,
      params: [
        long(times[i] as number),
        tenant,
        conversationId,
        readerId,
        row.get("sent_at"),
        ids[i],
      ] as Params,
    }));
    await mapConcurrently(chunk(records, recordBatch), concurrency, (batch) =>
      session.batch(batch, { ...write, logged: false }),
    );
    return doomed.length;
  }

  /** The reader's receipt records in the conversation (export): message, sent and read times. */
  async *receiptsOf(
    tenant: string,
    conversationId: string,
    readerId: string,
  ): AsyncGenerator<{ messageId: string; readAt: number | undefined }> {
    for await (const row of this.#context.session.rows(
      this.#cql.receiptsOfReader,
      [tenant, conversationId, readerId, 1_000_000_000],
      { ...read, fetchSize: 1_000 },
    )) {
      yield {
        messageId: row.get("message_id") as string,
        readAt: optionalNumber(row.get("read_at")),
      };
    }
  }

  /** One receipt's readers row, its cached count, then its record (found again if cut short). */
  async #deleteReceipt(
    tenant: string,
    conversationId: string,
    userId: string,
    row: types.Row,
  ): Promise<void> {
    const { session, writeClock } = this.#context;
    const messageId = row.get("message_id") as string;
    // Later than the receipt's own write time, so that no rewrite of it survives.
    const ts = Math.max(writeClock.nextMicros(), toNumber(row.get("write_ts")) + 1);
    await session.execute(this.#cql.deleteReader, [tenant, messageId, userId], {
      ...write,
      timestamp: ts,
    });
    await this.#cache?.readersDeleted(tenant, [messageId]);
    // The record goes last: a retry after a failure finds the rest again.
    await session.execute(
      this.#cql.deleteReceiptByReader,
      [tenant, conversationId, userId, row.get("sent_at"), messageId],
      { ...write, timestamp: ts },
    );
  }
}

function statements(keyspace: string) {
  const t = (table: string) => `${keyspace}.${table}`;
  return {
    deleteReader: `DELETE FROM ${t("readers_by_message")} WHERE tenant = ? AND message_id = ? AND reader_id = ?`,
    receiptsOfReaderFrom: `SELECT sent_at, message_id, write_ts FROM ${t("receipts_by_reader")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? AND sent_at >= ?`,
    receiptsOfReader: `SELECT sent_at, message_id, read_at, write_ts FROM ${t("receipts_by_reader")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? LIMIT ?`,
    deleteReceiptByReaderAt: `DELETE FROM ${t("receipts_by_reader")} USING TIMESTAMP ?
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? AND sent_at = ? AND message_id = ?`,
    deleteReceiptByReader: `DELETE FROM ${t("receipts_by_reader")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? AND sent_at = ? AND message_id = ?`,
  };
}
