import { mapConcurrently } from "../map-concurrently.js";
import type {
  NewReceipt,
  PrivacyStore,
  PrivateReceipt,
  ReceiptSettingChange,
  ReceiptVisibility,
  StoredReceiptSettings,
} from "../receipt-store.js";
import { storedReceiptSettings } from "../stored-receipt-settings.js";
import { type CqlContext, read, toNumber, write } from "./cql-values.js";

/** Message ids per `message_id IN ?` read. */
const idsPerRead = 100;

/**
 * Receipt settings (receipt_settings_by_user) and private reads (private_receipts_by_reader),
 * one partition per user each. Private reads are written only after reading which exist, in one
 * batch on the reader's partition: two calls of one reader racing may both call a read first,
 * which only the reader's own stream sees (twice); nothing is counted from them.
 */
export class CassandraPrivacy implements PrivacyStore {
  readonly #context: CqlContext;
  readonly #cql: ReturnType<typeof statements>;

  constructor(context: CqlContext) {
    this.#context = context;
    this.#cql = statements(context.keyspace);
  }

  async getReceiptSettings(tenant: string, userId: string): Promise<StoredReceiptSettings> {
    const result = await this.#context.session.execute(this.#cql.settings, [tenant, userId], read);
    return storedReceiptSettings(
      result.rows.map((row) => ({
        conversationId: row.get("conversation_id") as string,
        visibility: row.get("visibility") as ReceiptVisibility,
      })),
    );
  }

  async putReceiptSettings(
    tenant: string,
    userId: string,
    changes: readonly ReceiptSettingChange[],
  ): Promise<void> {
    const statements = changes.map(({ conversationId, visibility }) =>
      visibility === undefined
        ? { cql: this.#cql.dropSetting, params: [tenant, userId, conversationId] }
        : { cql: this.#cql.putSetting, params: [tenant, userId, conversationId, visibility] },
    );
    // One partition: all or none. One write time: a retry keeps the order with later changes.
    await this.#context.session.batch(statements, {
      ...write,
      timestamp: this.#context.writeClock.nextMicros(),
      logged: false,
    });
  }

  async insertPrivateReceipts(
    tenant: string,
    readerId: string,
    receipts: readonly NewReceipt[],
  ): Promise<boolean[]> {
    const ids = receipts.map((r) => r.message.messageId);
    const existing = await this.privateReadTimes(tenant, readerId, ids);
    const seen = new Set(existing.keys());
    const fresh = receipts.filter(({ message }) => {
      if (seen.has(message.messageId)) return false;
      seen.add(message.messageId);
      return true;
    });
    const { session, long, writeClock, concurrency } = this.#context;
    const timestamp = writeClock.nextMicros();
    // The index first: a message's deletion must find every private read of it.
    await mapConcurrently(fresh, concurrency, ({ message }) =>
      session.execute(this.#cql.insertIndex, [tenant, message.messageId, readerId], {
        ...write,
        timestamp,
      }),
    );
    await session.batch(
      fresh.map(({ message, readAt }) => ({
        cql: this.#cql.insertReceipt,
        params: [
          tenant,
          readerId,
          message.messageId,
          message.conversationId,
          long(message.sentAt),
          long(readAt),
        ],
      })),
      { ...write, timestamp, logged: false },
    );
    const inserted = new Set(fresh);
    return receipts.map((receipt) => inserted.has(receipt));
  }

  async privateReadTimes(
    tenant: string,
    readerId: string,
    messageIds: readonly string[],
  ): Promise<Map<string, number>> {
    const times = new Map<string, number>();
    const unique = [...new Set(messageIds)];
    for (let i = 0; i < unique.length; i += idsPerRead) {
      const result = await this.#context.session.execute(
        this.#cql.readTimes,
        [tenant, readerId, unique.slice(i, i + idsPerRead)],
        read,
      );
      for (const row of result.rows) {
        times.set(row.get("message_id") as string, toNumber(row.get("read_at")));
      }
    }
    return times;
  }

  async listPrivateReceipts(
    tenant: string,
    readerId: string,
    afterMessageId: string | undefined,
    limit: number,
  ): Promise<PrivateReceipt[]> {
    const result = await this.#context.session.execute(
      this.#cql.list,
      [tenant, readerId, afterMessageId ?? "", limit],
      read,
    );
    return result.rows.map((row) => ({
      messageId: row.get("message_id") as string,
      conversationId: row.get("conversation_id") as string,
      readAt: toNumber(row.get("read_at")),
    }));
  }

  async deletePrivateReceiptsOf(tenant: string, messageIds: readonly string[]): Promise<number> {
    const { session, writeClock, concurrency } = this.#context;
    const removed = await mapConcurrently(
      [...new Set(messageIds)],
      concurrency,
      async (messageId) => {
        const readers = (
          await session.execute(this.#cql.indexOf, [tenant, messageId], read)
        ).rows.map((row) => row.get("reader_id") as string);
        const existing = await mapConcurrently(readers, concurrency, async (readerId) => {
          const times = await this.privateReadTimes(tenant, readerId, [messageId]);
          const timestamp = writeClock.nextMicros();
          await session.execute(this.#cql.deleteReceipt, [tenant, readerId, messageId], {
            ...write,
            timestamp,
          });
          return times.size;
        });
        // The index last: a deletion cut short is found again by the next one.
        await session.execute(this.#cql.deleteIndexOf, [tenant, messageId], {
          ...write,
          timestamp: writeClock.nextMicros(),
        });
        return existing.reduce((a, b) => a + b, 0);
      },
    );
    return removed.reduce((a, b) => a + b, 0);
  }

  async eraseUserPrivacy(
    tenant: string,
    userId: string,
  ): Promise<{ readonly settings: number; readonly privateReceipts: number }> {
    const { session, writeClock, concurrency } = this.#context;
    const settings = (await this.#keys(this.#cql.settingKeys, [tenant, userId])).length;
    const messageIds = await this.#keys(this.#cql.receiptKeys, [tenant, userId]);
    // The index entries name the user too; the user's partitions go last, so a retry after a
    // crash finds what is left.
    await mapConcurrently(messageIds, concurrency, (messageId) =>
      session.execute(this.#cql.deleteIndexEntry, [tenant, messageId, userId], {
        ...write,
        timestamp: writeClock.nextMicros(),
      }),
    );
    // Whole partitions: one tombstone each, whatever the user had.
    const timestamp = writeClock.nextMicros();
    await session.execute(this.#cql.eraseSettings, [tenant, userId], { ...write, timestamp });
    await session.execute(this.#cql.eraseReceipts, [tenant, userId], { ...write, timestamp });
    return { settings, privateReceipts: messageIds.length };
  }

  /** The first column of every row of a query, paged. */
  async #keys(cql: string, params: readonly unknown[]): Promise<string[]> {
    const keys: string[] = [];
    for await (const row of this.#context.session.rows(cql, params, {
      ...read,
      fetchSize: 5_000,
    })) {
      keys.push(row.values()[0] as string);
    }
    return keys;
  }
}

function statements(keyspace: string) {
  const settings = `${keyspace}.receipt_settings_by_user`;
  const receipts = `${keyspace}.private_receipts_by_reader`;
  const byMessage = `${keyspace}.private_readers_by_message`;
  return {
    settings: `SELECT conversation_id, visibility FROM ${settings} WHERE tenant = ? AND user_id = ?`,
    settingKeys: `SELECT conversation_id FROM ${settings} WHERE tenant = ? AND user_id = ?`,
    putSetting: `INSERT INTO ${settings} (tenant, user_id, conversation_id, visibility)
      VALUES (?, ?, ?, ?)`,
    dropSetting: `DELETE FROM ${settings} WHERE tenant = ? AND user_id = ? AND conversation_id = ?`,
    eraseSettings: `DELETE FROM ${settings} WHERE tenant = ? AND user_id = ?`,
    insertReceipt: `INSERT INTO ${receipts}
      (tenant, reader_id, message_id, conversation_id, sent_at, read_at) VALUES (?, ?, ?, ?, ?, ?)`,
    deleteReceipt: `DELETE FROM ${receipts} WHERE tenant = ? AND reader_id = ? AND message_id = ?`,
    insertIndex: `INSERT INTO ${byMessage} (tenant, message_id, reader_id) VALUES (?, ?, ?)`,
    indexOf: `SELECT reader_id FROM ${byMessage} WHERE tenant = ? AND message_id = ?`,
    deleteIndexOf: `DELETE FROM ${byMessage} WHERE tenant = ? AND message_id = ?`,
    deleteIndexEntry: `DELETE FROM ${byMessage} WHERE tenant = ? AND message_id = ? AND reader_id = ?`,
    readTimes: `SELECT message_id, read_at FROM ${receipts}
      WHERE tenant = ? AND reader_id = ? AND message_id IN ?`,
    list: `SELECT message_id, conversation_id, read_at FROM ${receipts}
      WHERE tenant = ? AND reader_id = ? AND message_id > ? LIMIT ?`,
    receiptKeys: `SELECT message_id FROM ${receipts} WHERE tenant = ? AND reader_id = ?`,
    eraseReceipts: `DELETE FROM ${receipts} WHERE tenant = ? AND reader_id = ?`,
  };
}
