import type { DatabaseSync, StatementSync } from "node:sqlite";
import { LRUCache } from "lru-cache";
import { type ConversationType, c2cParticipants, type TrackedMessage } from "../../domain/model.js";
import { chunk } from "../chunk.js";
import type { Conversation, MessageCursor, MessageStore } from "../receipt-store.js";
import { keepExact, memoryKey, type OtherConnectionsCommits } from "./sqlite-row-changes.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

/** A row of messages, as the statements that read whole messages select it (messageColumns). */
export interface MessageRow {
  conversation_id: string;
  conversation_type: string;
  message_id: string;
  sender_id: string;
  sent_at: number;
  receiver_id: string;
  expires_at: number | null;
}

export const messageFromRow = (row: MessageRow): TrackedMessage => ({
  conversationId: row.conversation_id,
  conversationType: row.conversation_type as ConversationType,
  messageId: row.message_id,
  senderId: row.sender_id,
  sentAt: row.sent_at,
  receiverId: row.receiver_id,
  ...(row.expires_at === null ? {} : { expiresAt: row.expires_at }),
});

export const messageColumns =
  "conversation_id, conversation_type, message_id, sender_id, sent_at, receiver_id, expires_at";
/** A message past its retention is gone at once, though the pruning job removes it later. */
const notExpired = "(expires_at IS NULL OR expires_at > $now)";

/** SQLite caps bound parameters per statement; id lists are bounded well below this anyway. */
const maxInList = 500;

/** Conversations and tracked messages (tables conversations, messages). */
export class SqliteMessages implements Omit<MessageStore, "deleteMessages" | "deletedMessages"> {
  readonly #db: DatabaseSync;
  readonly #writes: SqliteWriteBatcher;
  readonly #sql: ReturnType<typeof prepareStatements>;
  readonly #byIdsStatements = new Map<number, StatementSync>();
  readonly #clock: () => number;
  /**
   * Tracked messages read before, by tenant and id: every GetReceipts and SendReceipts reads
   * its messages first, and a message's row (but its read count, not kept here) never changes
   * once tracked. An insert, a delete (an erasure) or an update of a kept column, by any
   * statement on this connection, drops the message at once; another connection's commit
   * drops all.
   */
  readonly #known = new LRUCache<string, TrackedMessage>({ max: 50_000 });
  readonly #otherCommits: OtherConnectionsCommits;

  constructor(db: DatabaseSync, writes: SqliteWriteBatcher, clock: () => number) {
    this.#db = db;
    this.#writes = writes;
    this.#sql = prepareStatements(db);
    this.#clock = clock;
    this.#otherCommits = keepExact(
      db,
      "message",
      [
        {
          table: "messages",
          keyColumn: "message_id",
          updateOf: ["tenant", "message_id", ...messageColumns.split(", ")],
        },
      ],
      this.#known,
    );
  }

  async getConversation(tenant: string, conversationId: string): Promise<Conversation | undefined> {
    const row = this.#sql.getConversation.get(tenant, conversationId) as
      | { type: string; participant_a: string; participant_b: string }
      | undefined;
    if (row === undefined) return undefined;
    return {
      conversationId,
      type: row.type as ConversationType,
      participants: row.type === "c2c" ? [row.participant_a, row.participant_b] : [],
    };
  }

  async getMessages(
    tenant: string,
    messageIds: readonly string[],
  ): Promise<Map<string, TrackedMessage>> {
    this.#otherCommits.look();
    const found = new Map<string, TrackedMessage>();
    const now = this.#clock();
    const unknown = new Set<string>();
    for (const id of messageIds) {
      const message = this.#known.get(memoryKey(tenant, id));
      // A message past its retention is gone at once, also from memory.
      if (message !== undefined && (message.expiresAt === undefined || message.expiresAt > now)) {
        found.set(id, message);
      } else unknown.add(id);
    }
    if (unknown.size === 0) return found;
    for (const ids of chunk([...unknown], maxInList)) {
      const rows = this.#messagesByIds(ids.length).all(
        now,
        tenant,
        ...ids,
      ) as unknown as MessageRow[];
      for (const row of rows) {
        const message = messageFromRow(row);
        found.set(row.message_id, message);
        // Only messages found: one not tracked yet may be tracked by the next call.
        this.#known.set(memoryKey(tenant, row.message_id), message);
      }
    }
    return found;
  }

  /** Prepared once per list length: GetReceipts and SendReceipts ask with 1 to 100 ids. */
  #messagesByIds(count: number): StatementSync {
    let statement = this.#byIdsStatements.get(count);
    if (statement === undefined) {
      statement = this.#db.prepare(
        `SELECT ${messageColumns} FROM messages WHERE (expires_at IS NULL OR expires_at > ?)
           AND tenant = ? AND message_id IN (${placeholders(count)})`,
      );
      this.#byIdsStatements.set(count, statement);
    }
    return statement;
  }

  async insertMessages(tenant: string, messages: readonly TrackedMessage[]): Promise<Set<string>> {
    const existing = new Set<string>();
    await this.#writes.write(() => {
      for (const message of messages) {
        // A deleted id stays deleted: tracking it again changes nothing.
        if (this.#sql.isDeleted.get(tenant, message.messageId) !== undefined) {
          existing.add(message.messageId);
          continue;
        }
        const pair = c2cParticipants(message);
        this.#sql.insertConversation.run(
          tenant,
          message.conversationId,
          message.conversationType,
          pair[0] ?? "",
          pair[1] ?? "",
        );
        const result = this.#sql.insertMessage.run(
          tenant,
          message.messageId,
          message.conversationId,
          message.conversationType,
          message.senderId,
          message.sentAt,
          message.receiverId,
          message.expiresAt ?? null,
        );
        if (result.changes === 0) existing.add(message.messageId);
      }
    });
    return existing;
  }

  async listMessagesSentBetween(
    tenant: string,
    conversationId: string,
    range: { readonly after: number | undefined; readonly upTo: number },
    cursor: MessageCursor | undefined,
    limit: number,
  ): Promise<TrackedMessage[]> {
    const rows = this.#sql.messagesBetween.all({
      tenant,
      conversation: conversationId,
      after: range.after ?? -1,
      upTo: range.upTo,
      cursorSentAt: cursor?.sentAt ?? -1,
      cursorId: cursor?.messageId ?? "",
      limit,
      now: this.#clock(),
    }) as unknown as MessageRow[];
    return rows.map(messageFromRow);
  }
}

function prepareStatements(db: DatabaseSync) {
  const q = (sql: string): StatementSync => db.prepare(sql);
  return {
    getConversation: q(
      "SELECT type, participant_a, participant_b FROM conversations WHERE tenant = ? AND conversation_id = ?",
    ),
    insertConversation: q(
      "INSERT OR IGNORE INTO conversations (tenant, conversation_id, type, participant_a, participant_b) VALUES (?, ?, ?, ?, ?)",
    ),
    insertMessage: q(
      `INSERT OR IGNORE INTO messages
       (tenant, message_id, conversation_id, conversation_type, sender_id, sent_at, receiver_id, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    isDeleted: q("SELECT 1 FROM deleted_messages WHERE tenant = ? AND message_id = ?"),
    messagesBetween: q(
      `SELECT ${messageColumns} FROM messages
       WHERE tenant = $tenant AND conversation_id = $conversation
         AND sent_at > $after AND sent_at <= $upTo
         AND (sent_at > $cursorSentAt OR (sent_at = $cursorSentAt AND message_id > $cursorId))
         AND ${notExpired}
       ORDER BY sent_at, message_id LIMIT $limit`,
    ),
  };
}

function placeholders(count: number): string {
  return Array.from({ length: count }, () => "?").join(", ");
}
