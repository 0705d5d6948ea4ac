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
    const { session, long, writeClock } = this.#context;
    await session.batch(
      fresh.map(({ message, readAt }) => ({
        cql: this.#cql.insertReceipt,
        params: [tenant, readerId, message.messageId, message.conversationId, long(readAt)],
      })),
      { ...write, timestamp: writeClock.nextMicros(), logged: false },
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

  async eraseUserPrivacy(
    tenant: string,
    userId: string,
  ): Promise<{ readonly settings: number; readonly privateReceipts: number }> {
    const { session, writeClock } = this.#context;
    const settings = await this.#count(this.#cql.settingKeys, [tenant, userId]);
    const privateReceipts = await this.#count(this.#cql.receiptKeys, [tenant, userId]);
    // Whole partitions: one tombstone each, whatever the user had.
    const timestamp = writeClock.nextMicros();
    await session.execute(this.#cql.eraseSettings, [tenant, userId], { ...write, timestamp });
    await session.execute(this.#cql.eraseReceipts, [tenant, userId], { ...write, timestamp });
    return { settings, privateReceipts };
  }

  async #count(cql: string, params: readonly unknown[]): Promise<number> {
    let count = 0;
    for await (const _ of this.#context.session.rows(cql, params, { ...read, fetchSize: 5_000 })) {
      count++;
    }
    return count;
  }
}

function statements(keyspace: string) {
  const settings = `${keyspace}.receipt_settings_by_user`;
  const receipts = `${keyspace}.private_receipts_by_reader`;
  return {
    settings: `SELECT conversation_id, visibility FROM ${settings} WHERE tenant = ? AND user_id = ?`,
    settingKeys: `SELECT conversation_id FROM ${settings} WHERE tenant = ? AND user_id = ?`,
    putSetting: `INSERT INTO ${settings} (tenant, user_id, conversation_id, visibility)
      VALUES (?, ?, ?, ?)`,
    dropSetting: `DELETE FROM ${settings} WHERE tenant = ? AND user_id = ? AND conversation_id = ?`,
    eraseSettings: `DELETE FROM ${settings} WHERE tenant = ? AND user_id = ?`,
    insertReceipt: `INSERT INTO ${receipts} (tenant, reader_id, message_id, conversation_id, read_at)
      VALUES (?, ?, ?, ?, ?)`,
    readTimes: `SELECT message_id, read_at FROM ${receipts}
      WHERE tenant = ? AND reader_id = ? AND message_id IN ?`,
    list: `SELECT message_id, conversation_id, read_at FROM ${receipts}
      WHERE tenant = ? AND reader_id = ? AND message_id > ? LIMIT ?`,
    receiptKeys: `SELECT message_id FROM ${receipts} WHERE tenant = ? AND reader_id = ?`,
    eraseReceipts: `DELETE FROM ${receipts} WHERE tenant = ? AND reader_id = ?`,
  };
}
