import { pendingReceipt, type ReadMember, type TrackedMessage } from "../../domain/model.js";
import { mapConcurrently } from "../map-concurrently.js";
import type { ReadCountCache, ReaderSource } from "../read-count-cache.js";
import type { NewReceipt, ReceiptLedger, RecordedReceipt } from "../receipt-store.js";
import type { CassandraDeletionMarkers } from "./cassandra-deletion-markers.js";
import type { CassandraOutbox } from "./cassandra-outbox.js";
import type { CassandraReaderReceipts } from "./cassandra-reader-receipts.js";
import {
  CassandraReceiptRecords,
  type NewRecord,
  type ReceiptRecord,
} from "./cassandra-receipt-records.js";
import type { ReceiptTombstones } from "./cassandra-receipt-tombstones.js";
import type { CassandraUserIndex } from "./cassandra-user-index.js";
import { type CqlContext, read, toNumber, ttlSeconds, write } from "./cql-values.js";
import { PartitionWriteCoalescer } from "./partition-write-coalescer.js";
import { SerialPerKey } from "./serial-per-key.js";

/** Readers rows of one message sent as one batch at most. */
const readerRowBatch = 100;

/**
 * The receipt ledger: readers_by_message (one row per reader of a message,
 * the rows that count) and receipts_by_reader (each receipt's record, by
 * reader and conversation), with the optional read-count cache in front of
 * the readers partitions and a coalescer of the writes to one partition.
 *
 * Exactness of read counts: readers rows are written by idempotent INSERTs
 * at a fixed write time, so retries (the driver's or the client's) never add
 * a row twice and the number of rows is the count. Whether a receipt is the
 * reader's first is told by its record (see insertReceipts). Counter columns
 * and lightweight transactions are not used for receipts.
 */
export class CassandraReceiptLedger implements Omit<ReceiptLedger, "listFirstPages"> {
  readonly #context: CqlContext;
  readonly #cql: ReturnType<typeof statements>;
  readonly #outbox: CassandraOutbox;
  readonly #cache: ReadCountCache | undefined;
  readonly #index: CassandraUserIndex;
  readonly #readerCalls = new SerialPerKey();
  readonly #readerRows: PartitionWriteCoalescer;
  readonly #markers: CassandraDeletionMarkers;
  readonly #tombstones: ReceiptTombstones;
  readonly #readerReceipts: CassandraReaderReceipts;
  readonly #records: CassandraReceiptRecords;

  constructor(
    context: CqlContext,
    outbox: CassandraOutbox,
    cache: ReadCountCache | undefined,
    index: CassandraUserIndex,
    deletions: {
      readonly markers: CassandraDeletionMarkers;
      readonly tombstones: ReceiptTombstones;
      readonly readerReceipts: CassandraReaderReceipts;
    },
  ) {
    this.#context = context;
    this.#index = index;
    this.#markers = deletions.markers;
    this.#tombstones = deletions.tombstones;
    this.#readerReceipts = deletions.readerReceipts;
    this.#cql = statements(context.keyspace);
    this.#records = new CassandraReceiptRecords(context);
    this.#outbox = outbox;
    this.#cache = cache;
    this.#readerRows = new PartitionWriteCoalescer(
      async (rows) => {
        const [only] = rows;
        // A row alone goes out as a plain statement: a batch of one costs more.
        if (rows.length === 1 && only !== undefined) {
          await context.session.execute(only.cql, only.params, write);
        } else await context.session.batch(rows, { ...write, logged: false });
      },
      { maxBatch: readerRowBatch },
    );
  }

  /**
   * No lightweight transaction: `receipts_by_reader` (one partition per reader
   * and conversation) is the record of each receipt. One read tells which of
   * the call's messages the reader has a record for; the records of the new
   * receipts go in as one single-partition batch; then each receipt's readers
   * row, the one that counts, is written from its record, coalesced with the
   * other readers' rows of the same message. Rows carry the record's write
   * time, so rewriting one (a retry, a duplicate) changes nothing and never
   * outlives a deletion. A call that fails part way leaves records whose
   * readers rows may be missing; a retry writes them from the records and
   * counts each once, though as not new.
   *
   * The calls of one reader run one at a time in this process, so of two
   * concurrent sends of one receipt here exactly one is new. Across instances
   * both may report new (the count stays exact: one row per reader).
   */
  insertReceipts(
    tenant: string,
    readerId: string,
    receipts: readonly NewReceipt[],
  ): Promise<RecordedReceipt[]> {
    return this.#readerCalls.run(`${tenant}\u0000${readerId}`, () =>
      this.#insertReceipts(tenant, readerId, receipts),
    );
  }

  async readCounts(
    tenant: string,
    messages: readonly TrackedMessage[],
  ): Promise<Map<string, number>> {
    const ids = [...new Set(messages.map((m) => m.messageId))];
    const counts =
      this.#cache === undefined
        ? new Map<string, number>()
        : await this.#cache.readCounts(tenant, ids, (id) => this.#readerSource(tenant, id));
    const cold = ids.filter((id) => !counts.has(id));
    await mapConcurrently(cold, this.#context.concurrency, async (id) => {
      counts.set(id, await this.#countReaders(tenant, id));
    });
    return counts;
  }

  async listReaders(
    tenant: string,
    message: TrackedMessage,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<ReadMember[]> {
    const result = await this.#context.session.execute(
      this.#cql.readersAfter,
      [tenant, message.messageId, afterUserId ?? "", limit],
      read,
    );
    return result.rows.map((row) => ({
      userId: row.get("reader_id") as string,
      readAt: toNumber(row.get("read_at")),
    }));
  }

  async receiverReadTimes(
    tenant: string,
    messages: readonly TrackedMessage[],
  ): Promise<Map<string, number>> {
    const { session, concurrency } = this.#context;
    const times = new Map<string, number>();
    await mapConcurrently(messages, concurrency, async ({ messageId, receiverId }) => {
      const row = (
        await session.execute(this.#cql.getReaderReadAt, [tenant, messageId, receiverId], read)
      ).first();
      if (row) times.set(messageId, toNumber(row.get("read_at")));
    });
    return times;
  }

  async hasRead(
    tenant: string,
    readerId: string,
    messageIds: readonly string[],
  ): Promise<Set<string>> {
    const found = new Set<string>();
    const unique = [...new Set(messageIds)];
    await mapConcurrently(unique, this.#context.concurrency, async (messageId) => {
      const row = (
        await this.#context.session.execute(
          this.#cql.getReader,
          [tenant, messageId, readerId],
          read,
        )
      ).first();
      if (row) found.add(messageId);
    });
    return found;
  }

  /**
   * A call killed between its readers rows and its cache update leaves a hot entry that
   * misses the reader until it expires: adding the stored readers again (idempotent) makes
   * the entry agree with the rows.
   */
  async settleReceipts(
    tenant: string,
    readerId: string,
    messageIds: readonly string[],
  ): Promise<Set<string>> {
    const stored = await this.hasRead(tenant, readerId, messageIds);
    const cache = this.#cache;
    if (cache !== undefined) {
      await mapConcurrently([...stored], this.#context.concurrency, (messageId) =>
        cache.readerRecorded(tenant, messageId, readerId, this.#readerSource(tenant, messageId)),
      );
    }
    return stored;
  }

  /** Readers of the message with after < reader_id <= through: a range of its partition. */
  async readersBetween(
    tenant: string,
    messageId: string,
    after: string,
    through: string,
  ): Promise<Set<string>> {
    const readers = new Set<string>();
    for await (const row of this.#context.session.rows(
      this.#cql.readerIdsBetween,
      [tenant, messageId, after, through],
      { ...read, fetchSize: 1_000 },
    )) {
      readers.add(row.get("reader_id") as string);
    }
    return readers;
  }

  deleteReceiptsFrom(tenant: string, groupId: string, userId: string, fromSentAt: number) {
    return this.#readerReceipts.deleteFrom(tenant, groupId, userId, fromSentAt);
  }

  /** The read time of the reader's receipt for the message, if it has one. */
  async readAtOf(tenant: string, messageId: string, readerId: string): Promise<number | undefined> {
    const row = (
      await this.#context.session.execute(
        this.#cql.getReaderReadAt,
        [tenant, messageId, readerId],
        read,
      )
    ).first();
    return row ? toNumber(row.get("read_at")) : undefined;
  }

  async #insertReceipts(
    tenant: string,
    readerId: string,
    receipts: readonly NewReceipt[],
  ): Promise<RecordedReceipt[]> {
    const { long, concurrency } = this.#context;
    const records = await this.#records.find(
      tenant,
      readerId,
      receipts.map((r) => r.message),
    );
    const writeTs = this.#context.writeClock.nextMicros();
    const byMessage = new Map<string, ReceiptRecord & { readonly message: TrackedMessage }>();
    const fresh: NewRecord[] = [];
    for (const { message, readAt } of receipts) {
      if (byMessage.has(message.messageId)) continue;
      const known = records.get(message.messageId);
      if (known === undefined) fresh.push({ message, readAt, writeTs });
      byMessage.set(message.messageId, { message, ...(known ?? { readAt, writeTs }) });
    }
    // Before the receipts: a receipt acknowledged to the caller is always announced, and
    // found by an export or an erasure of its reader.
    await Promise.all([
      this.#outbox.keep(
        fresh.map(({ message, readAt }) => pendingReceipt(tenant, readerId, message, readAt)),
      ),
      fresh.length === 0
        ? undefined
        : this.#index.noteConversationsOf(
            tenant,
            readerId,
            fresh.map((r) => r.message.conversationId),
          ),
    ]);
    await this.#records.write(tenant, readerId, fresh);
    await Promise.all(
      [...byMessage.values()].map(({ message, readAt, writeTs: ts }) =>
        // A record of version 1 has no read time: its readers row went in with it, in one batch.
        readAt === undefined
          ? undefined
          : this.#readerRows.write(`${tenant}\u0000${message.messageId}`, {
              cql: this.#cql.insertReader,
              params: [
                tenant,
                message.messageId,
                readerId,
                long(readAt),
                long(ts),
                ttlSeconds(message.expiresAt, this.#context.clock()),
              ],
            }),
      ),
    );
    // Counted only once every receipt of the call is stored. Meanwhile the deletion markers
    // are read, after the rows went in: a deletion that this read misses was not complete
    // before it began, so the deletion's own read of the readers (which follows its marker)
    // finds these rows and removes them; one it sees, the receipt removes itself.
    const counts = new Map<string, number>();
    const [deleted] = await Promise.all([
      this.#markers.deletedAmong(
        tenant,
        [...byMessage.values()].map((entry) => entry.message),
      ),
      mapConcurrently([...byMessage.keys()], concurrency, async (messageId) => {
        const readers = this.#readerSource(tenant, messageId);
        const cached = await this.#cache?.readerRecorded(tenant, messageId, readerId, readers);
        counts.set(messageId, cached ?? (await this.#countReaders(tenant, messageId)));
      }),
    ]);
    await Promise.all(
      [...deleted].map((id) => {
        const entry = byMessage.get(id);
        return entry === undefined
          ? undefined
          : this.#tombstones.takeBack(tenant, readerId, entry.message);
      }),
    );
    const reported = new Set<string>();
    return receipts.map(({ message: { messageId } }): RecordedReceipt => {
      if (deleted.has(messageId))
        return { messageId, inserted: false, readCount: 0, deleted: true };
      const first = !reported.has(messageId) && !records.has(messageId);
      reported.add(messageId);
      return { messageId, inserted: first, readCount: counts.get(messageId) ?? 0 };
    });
  }

  async #countReaders(tenant: string, messageId: string): Promise<number> {
    const row = (
      await this.#context.session.execute(this.#cql.countReaders, [tenant, messageId], read)
    ).first();
    return row ? toNumber(row.get("n")) : 0;
  }

  #readerSource(tenant: string, messageId: string): ReaderSource {
    const session = this.#context.session;
    const cql = this.#cql.readerIds;
    return async function* () {
      let page: string[] = [];
      for await (const row of session.rows(cql, [tenant, messageId], {
        ...read,
        fetchSize: 5_000,
      })) {
        page.push(row.get("reader_id") as string);
        if (page.length >= 5_000) {
          yield page;
          page = [];
        }
      }
      if (page.length > 0) yield page;
    };
  }
}

function statements(keyspace: string) {
  const t = (table: string) => `${keyspace}.${table}`;
  return {
    insertReader: `INSERT INTO ${t("readers_by_message")} (tenant, message_id, reader_id, read_at)
      VALUES (?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?`,
    getReader: `SELECT reader_id FROM ${t("readers_by_message")}
      WHERE tenant = ? AND message_id = ? AND reader_id = ?`,
    getReaderReadAt: `SELECT read_at FROM ${t("readers_by_message")}
      WHERE tenant = ? AND message_id = ? AND reader_id = ?`,
    countReaders: `SELECT COUNT(*) AS n FROM ${t("readers_by_message")} WHERE tenant = ? AND message_id = ?`,
    readerIds: `SELECT reader_id FROM ${t("readers_by_message")} WHERE tenant = ? AND message_id = ?`,
    readersAfter: `SELECT reader_id, read_at FROM ${t("readers_by_message")}
      WHERE tenant = ? AND message_id = ? AND reader_id > ? LIMIT ?`,
    readerIdsBetween: `SELECT reader_id FROM ${t("readers_by_message")}
      WHERE tenant = ? AND message_id = ? AND reader_id > ? AND reader_id <= ?`,
  };
}
