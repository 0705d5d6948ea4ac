import type { ConversationType, TrackedMessage } from "../../domain/model.js";
import { mapConcurrently } from "../map-concurrently.js";
import {
  type CqlContext,
  optionalNumber,
  read,
  toNumber,
  ttlSeconds,
  write,
} from "./cql-values.js";

/** Ids per read of one conversation's markers (an IN on the clustering key). */
const idsPerRead = 100;

/**
 * The marker of each deleted id, kept twice: by id (deleted_messages, schema 5: the message
 * as it was, read by TrackMessages and the deletion itself) and by conversation
 * (deleted_messages_by_conversation, schema 8: read by every receipt call, one request per
 * conversation). Both are written before a deletion removes anything. Never cached: another
 * instance may have written one a moment ago.
 */
export class CassandraDeletionMarkers {
  readonly #context: CqlContext;
  readonly #cql: ReturnType<typeof statements>;

  constructor(context: CqlContext) {
    this.#context = context;
    this.#cql = statements(context.keyspace);
  }

  /** The markers of these ids, by id: the message as it was when deleted. */
  async find(tenant: string, messageIds: readonly string[]): Promise<Map<string, TrackedMessage>> {
    const found = new Map<string, TrackedMessage>();
    await mapConcurrently([...new Set(messageIds)], this.#context.concurrency, async (id) => {
      const row = (await this.#context.session.execute(this.#cql.get, [tenant, id], read)).first();
      if (!row) return;
      const expiresAt = optionalNumber(row.get("expires_at"));
      found.set(id, {
        conversationId: row.get("conversation_id") as string,
        conversationType: row.get("conversation_type") as ConversationType,
        messageId: id,
        senderId: row.get("sender_id") as string,
        sentAt: toNumber(row.get("sent_at")),
        receiverId: row.get("receiver_id") as string,
        ...(expiresAt === undefined ? {} : { expiresAt }),
      });
    });
    return found;
  }

  /** Which of these messages are marked deleted: one read per conversation (and 100 ids). */
  async deletedAmong(tenant: string, messages: readonly TrackedMessage[]): Promise<Set<string>> {
    const reads: [string, string[]][] = [];
    for (const [conversationId, of] of Map.groupBy(messages, (m) => m.conversationId)) {
      const ids = [...new Set(of.map((m) => m.messageId))];
      for (let i = 0; i < ids.length; i += idsPerRead) {
        reads.push([conversationId, ids.slice(i, i + idsPerRead)]);
      }
    }
    const deleted = new Set<string>();
    await mapConcurrently(reads, this.#context.concurrency, async ([conversationId, ids]) => {
      const result = await this.#context.session.execute(
        this.#cql.inConversation,
        [tenant, conversationId, ids],
        read,
      );
      for (const row of result.rows) deleted.add(row.get("message_id") as string);
    });
    return deleted;
  }

  /** Marks messages deleted; the markers end with the message's retention, like its rows. */
  async mark(
    tenant: string,
    messages: readonly TrackedMessage[],
    deletedAt: number,
  ): Promise<void> {
    const { session, long, concurrency, clock } = this.#context;
    await mapConcurrently(messages, concurrency, async (m) => {
      const ttl = ttlSeconds(m.expiresAt, clock());
      await Promise.all([
        session.execute(
          this.#cql.mark,
          [
            tenant,
            m.messageId,
            m.conversationId,
            m.conversationType,
            m.senderId,
            long(m.sentAt),
            m.receiverId,
            long(deletedAt),
            m.expiresAt === undefined ? null : long(m.expiresAt),
            ttl,
          ],
          write,
        ),
        session.execute(
          this.#cql.markInConversation,
          [tenant, m.conversationId, m.messageId, long(deletedAt), ttl],
          write,
        ),
      ]);
    });
  }
}

function statements(keyspace: string) {
  const table = `${keyspace}.deleted_messages`;
  const byConversation = `${keyspace}.deleted_messages_by_conversation`;
  return {
    inConversation: `SELECT message_id FROM ${byConversation}
      WHERE tenant = ? AND conversation_id = ? AND message_id IN ?`,
    markInConversation: `INSERT INTO ${byConversation} (tenant, conversation_id, message_id,
      deleted_at) VALUES (?, ?, ?, ?) USING TTL ?`,
    get: `SELECT conversation_id, conversation_type, sender_id, sent_at, receiver_id, expires_at
      FROM ${table} WHERE tenant = ? AND message_id = ?`,
    mark: `INSERT INTO ${table} (tenant, message_id, conversation_id, conversation_type, sender_id,
      sent_at, receiver_id, deleted_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
  };
}
