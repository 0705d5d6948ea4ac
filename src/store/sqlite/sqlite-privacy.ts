import type { DatabaseSync, StatementSync } from "node:sqlite";
import type {
  NewReceipt,
  PrivacyStore,
  PrivateReceipt,
  ReceiptSettingChange,
  ReceiptVisibility,
  StoredReceiptSettings,
} from "../receipt-store.js";
import { storedReceiptSettings } from "../stored-receipt-settings.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

/** Receipt settings (table receipt_settings) and private reads (private_receipts). */
export class SqlitePrivacy implements PrivacyStore {
  readonly #writes: SqliteWriteBatcher;
  readonly #sql: ReturnType<typeof prepareStatements>;

  constructor(db: DatabaseSync, writes: SqliteWriteBatcher) {
    this.#writes = writes;
    this.#sql = prepareStatements(db);
  }

  async getReceiptSettings(tenant: string, userId: string): Promise<StoredReceiptSettings> {
    const rows = this.#sql.settings.all(tenant, userId) as unknown as {
      conversation_id: string;
      visibility: ReceiptVisibility;
    }[];
    return storedReceiptSettings(
      rows.map((row) => ({ conversationId: row.conversation_id, visibility: row.visibility })),
    );
  }

  async putReceiptSettings(
    tenant: string,
    userId: string,
    changes: readonly ReceiptSettingChange[],
  ): Promise<void> {
    await this.#writes.write(() => {
      for (const { conversationId, visibility } of changes) {
        if (visibility === undefined) this.#sql.dropSetting.run(tenant, userId, conversationId);
        else this.#sql.putSetting.run(tenant, userId, conversationId, visibility);
      }
    });
  }

  async insertPrivateReceipts(
    tenant: string,
    readerId: string,
    receipts: readonly NewReceipt[],
  ): Promise<boolean[]> {
    return this.#writes.write(() =>
      receipts.map(
        ({ message, readAt }) =>
          this.#sql.insertReceipt.run(
            tenant,
            readerId,
            message.messageId,
            message.conversationId,
            message.sentAt,
            readAt,
          ).changes > 0,
      ),
    );
  }

  async privateReadTimes(
    tenant: string,
    readerId: string,
    messageIds: readonly string[],
  ): Promise<Map<string, number>> {
    const times = new Map<string, number>();
    for (const messageId of messageIds) {
      const row = this.#sql.readAt.get(tenant, readerId, messageId) as
        | { read_at: number }
        | undefined;
      if (row !== undefined) times.set(messageId, row.read_at);
    }
    return times;
  }

  async listPrivateReceipts(
    tenant: string,
    readerId: string,
    afterMessageId: string | undefined,
    limit: number,
  ): Promise<PrivateReceipt[]> {
    const rows = this.#sql.list.all(tenant, readerId, afterMessageId ?? "", limit) as unknown as {
      message_id: string;
      conversation_id: string;
      read_at: number;
    }[];
    return rows.map((row) => ({
      messageId: row.message_id,
      conversationId: row.conversation_id,
      readAt: row.read_at,
    }));
  }

  async deletePrivateReceiptsOf(tenant: string, messageIds: readonly string[]): Promise<number> {
    return this.#writes.write(() =>
      messageIds.reduce(
        (removed, messageId) =>
          removed + Number(this.#sql.deleteOfMessage.run(tenant, messageId).changes),
        0,
      ),
    );
  }

  async eraseUserPrivacy(
    tenant: string,
    userId: string,
  ): Promise<{ readonly settings: number; readonly privateReceipts: number }> {
    return this.#writes.write(() => ({
      settings: Number(this.#sql.eraseSettings.run(tenant, userId).changes),
      privateReceipts: Number(this.#sql.eraseReceipts.run(tenant, userId).changes),
    }));
  }
}

function prepareStatements(db: DatabaseSync) {
  const q = (sql: string): StatementSync => db.prepare(sql);
  return {
    settings: q(
      "SELECT conversation_id, visibility FROM receipt_settings WHERE tenant = ? AND user_id = ?",
    ),
    putSetting: q(
      `INSERT INTO receipt_settings (tenant, user_id, conversation_id, visibility) VALUES (?, ?, ?, ?)
       ON CONFLICT (tenant, user_id, conversation_id) DO UPDATE SET visibility = excluded.visibility`,
    ),
    dropSetting: q(
      "DELETE FROM receipt_settings WHERE tenant = ? AND user_id = ? AND conversation_id = ?",
    ),
    insertReceipt: q(
      `INSERT OR IGNORE INTO private_receipts
         (tenant, reader_id, message_id, conversation_id, sent_at, read_at) VALUES (?, ?, ?, ?, ?, ?)`,
    ),
    readAt: q(
      "SELECT read_at FROM private_receipts WHERE tenant = ? AND reader_id = ? AND message_id = ?",
    ),
    list: q(
      `SELECT message_id, conversation_id, read_at FROM private_receipts
       WHERE tenant = ? AND reader_id = ? AND message_id > ? ORDER BY message_id LIMIT ?`,
    ),
    deleteOfMessage: q("DELETE FROM private_receipts WHERE tenant = ? AND message_id = ?"),
    eraseSettings: q("DELETE FROM receipt_settings WHERE tenant = ? AND user_id = ?"),
    eraseReceipts: q("DELETE FROM private_receipts WHERE tenant = ? AND reader_id = ?"),
  };
}
