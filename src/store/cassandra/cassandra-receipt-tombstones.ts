import type { TrackedMessage } from "../../domain/model.js";
import { mapConcurrently } from "../map-concurrently.js";
import type { ReadCountCache } from "../read-count-cache.js";
import { afterEveryWriteMicros, type CqlContext, read, write } from "./cql-values.js";

/**
 * The tombstones of a deleted message's receipts (readers_by_message, receipts_by_reader):
 * written later than any write the store makes (afterEveryWriteMicros), so that a receipt of
 * the message written after them, by a call racing the deletion or a retry, is never visible.
 * Message ids are never reused (the deletion marker), so shadowing their rows forever is safe.
 */
export class ReceiptTombstones {
  readonly #context: CqlContext;
  readonly #cache: ReadCountCache | undefined;
  readonly #cql: ReturnType<typeof statements>;

  constructor(context: CqlContext, cache: ReadCountCache | undefined) {
    this.#context = context;
    this.#cache = cache;
    this.#cql = statements(context.keyspace);
  }

  /**
   * Every receipt of the message: each reader's record, found through the readers partition,
   * then the partition itself, then the cached count. Run again, it finds nothing left.
   */
  async removeAll(tenant: string, message: TrackedMessage): Promise<void> {
    const { session, concurrency } = this.#context;
    const readers: string[] = [];
    for await (const row of session.rows(this.#cql.readerIds, [tenant, message.messageId], {
      ...read,
      fetchSize: 5_000,
    })) {
      readers.push(row.get("reader_id") as string);
    }
    await mapConcurrently(readers, concurrency, (readerId) =>
      session.execute(this.#cql.deleteRecord, this.#recordKey(tenant, readerId, message), gone),
    );
    await session.execute(this.#cql.deleteReaders, [tenant, message.messageId], gone);
    await this.#cache?.readersDeleted(tenant, [message.messageId]);
  }

  /** One reader's receipt, written while its message was being deleted, takes itself back. */
  async takeBack(tenant: string, readerId: string, message: TrackedMessage): Promise<void> {
    const { session } = this.#context;
    await Promise.all([
      session.execute(this.#cql.deleteReader, [tenant, message.messageId, readerId], gone),
      session.execute(this.#cql.deleteRecord, this.#recordKey(tenant, readerId, message), gone),
    ]);
    await this.#cache?.readersDeleted(tenant, [message.messageId]);
  }

  #recordKey(tenant: string, readerId: string, message: TrackedMessage): unknown[] {
    const { conversationId, sentAt, messageId } = message;
    return [tenant, conversationId, readerId, this.#context.long(sentAt), messageId];
  }
}

const gone = { ...write, timestamp: afterEveryWriteMicros };

function statements(keyspace: string) {
  const t = (table: string) => `${keyspace}.${table}`;
  return {
    readerIds: `SELECT reader_id FROM ${t("readers_by_message")} WHERE tenant = ? AND message_id = ?`,
    deleteReaders: `DELETE FROM ${t("readers_by_message")} WHERE tenant = ? AND message_id = ?`,
    deleteReader: `DELETE FROM ${t("readers_by_message")}
      WHERE tenant = ? AND message_id = ? AND reader_id = ?`,
    deleteRecord: `DELETE FROM ${t("receipts_by_reader")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? AND sent_at = ? AND message_id = ?`,
  };
}
