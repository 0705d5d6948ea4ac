import type { DatabaseSync, StatementSync } from "node:sqlite";
import { pendingDeletion, type TrackedMessage } from "../../domain/model.js";
import type { MessageStore } from "../receipt-store.js";
import { type MessageRow, messageColumns, messageFromRow } from "./sqlite-messages.js";
import type { SqliteOutbox } from "./sqlite-outbox.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

/**
 * Deleting messages (DeleteMessages): the message row, its receipts (and with them its read
 * count) and the outbox entries of those receipts go in one transaction, which also keeps the
 * deletion marker and the pending deletion change. Receipts are recorded through the same
 * write batcher and check the message in their own transaction, so a receipt racing a deletion
 * is either deleted with the message or never stored.
 */
export class SqliteMessageDeletions
  implements Pick<MessageStore, "deleteMessages" | "deletedMessages">
{
  readonly #writes: SqliteWriteBatcher;
  readonly #outbox: SqliteOutbox;
  readonly #sql: Record<
    "message" | "mark" | "marker" | "dropReceipts" | "dropMessage" | "dropPending",
    StatementSync
  >;

  constructor(db: DatabaseSync, writes: SqliteWriteBatcher, outbox: SqliteOutbox) {
    this.#writes = writes;
    this.#outbox = outbox;
    this.#sql = {
      message: db.prepare(
        `SELECT ${messageColumns} FROM messages WHERE tenant = ? AND message_id = ?`,
      ),
      mark: db.prepare(
        `INSERT OR IGNORE INTO deleted_messages (tenant, message_id, conversation_id,
           conversation_type, sender_id, sent_at, receiver_id, deleted_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      marker: db.prepare(
        `SELECT ${messageColumns} FROM deleted_messages WHERE tenant = ? AND message_id = ?`,
      ),
      ...removals(db),
    };
  }

  async deleteMessages(
    tenant: string,
    conversationId: string,
    messageIds: readonly string[],
    deletedAt: number,
  ): Promise<TrackedMessage[]> {
    return this.#writes.write(() =>
      [...new Set(messageIds)].flatMap((messageId) => {
        const row = this.#sql.message.get(tenant, messageId) as MessageRow | undefined;
        if (row === undefined || row.conversation_id !== conversationId) return [];
        const message = messageFromRow(row);
        this.#sql.mark.run(
          tenant,
          messageId,
          message.conversationId,
          message.conversationType,
          message.senderId,
          message.sentAt,
          message.receiverId,
          deletedAt,
          message.expiresAt ?? null,
        );
        removeMessage(this.#sql, tenant, messageId);
        this.#outbox.keep(pendingDeletion(tenant, message, deletedAt));
        return [message];
      }),
    );
  }

  async deletedMessages(
    tenant: string,
    messageIds: readonly string[],
  ): Promise<Map<string, TrackedMessage>> {
    const found = new Map<string, TrackedMessage>();
    for (const messageId of new Set(messageIds)) {
      const row = this.#sql.marker.get(tenant, messageId) as MessageRow | undefined;
      if (row !== undefined) found.set(messageId, messageFromRow(row));
    }
    return found;
  }
}

/** The statements that remove a message and what hangs on it (deletion and retention). */
export function removals(
  db: DatabaseSync,
): Record<"dropReceipts" | "dropMessage" | "dropPending", StatementSync> {
  return {
    dropReceipts: db.prepare(
      `DELETE FROM receipts WHERE (tenant, message_id, reader_id) IN (
         SELECT tenant, message_id, reader_id FROM receipts
         WHERE tenant = $tenant AND message_id = $message LIMIT $limit)`,
    ),
    dropMessage: db.prepare("DELETE FROM messages WHERE tenant = ? AND message_id = ?"),
    // Receipt entries are keyed 'r' NUL message NUL reader: one key range per message.
    dropPending: db.prepare("DELETE FROM outbox WHERE tenant = ? AND key > ? AND key < ?"),
  };
}

/**
 * Removes up to `limit` receipts of the message, and the message itself once none is left;
 * returns how many rows it removed (at most `limit`).
 */
export function removeMessage(
  sql: ReturnType<typeof removals>,
  tenant: string,
  messageId: string,
  limit = Number.MAX_SAFE_INTEGER,
): number {
  if (limit <= 0) return 0;
  const receipts = Number(sql.dropReceipts.run({ tenant, message: messageId, limit }).changes);
  if (receipts >= limit) return receipts;
  sql.dropPending.run(tenant, `r\u0000${messageId}\u0000`, `r\u0000${messageId}\u0001`);
  return receipts + Number(sql.dropMessage.run(tenant, messageId).changes);
}
