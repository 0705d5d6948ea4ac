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

/**
 * Deleted messages (table deleted_messages, schema 5): the marker of each deleted id, which
 * TrackMessages, receipts and the deletion itself consult. Never cached: another instance may
 * have written it a moment ago.
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

  /** Marks messages deleted; the marker ends with the message's retention, like its rows. */
  async mark(
    tenant: string,
    messages: readonly TrackedMessage[],
    deletedAt: number,
  ): Promise<void> {
    const { session, long, concurrency, clock } = this.#context;
    await mapConcurrently(messages, concurrency, (m) =>
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
          ttlSeconds(m.expiresAt, clock()),
        ],
        write,
      ),
    );
  }
}

function statements(keyspace: string) {
  const table = `${keyspace}.deleted_messages`;
  return {
    get: `SELECT conversation_id, conversation_type, sender_id, sent_at, receiver_id, expires_at
      FROM ${table} WHERE tenant = ? AND message_id = ?`,
    mark: `INSERT INTO ${table} (tenant, message_id, conversation_id, conversation_type, sender_id,
      sent_at, receiver_id, deleted_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
  };
}
