import { types } from "cassandra-driver";
import { LRUCache } from "lru-cache";
import {
  type ConversationType,
  c2cParticipants,
  erasedUserId,
  type TrackedMessage,
} from "../../domain/model.js";
import { mapConcurrently } from "../map-concurrently.js";
import type { Conversation, MessageCursor, MessageStore } from "../receipt-store.js";
import type { CassandraDeletionMarkers } from "./cassandra-deletion-markers.js";
import type { CassandraUserIndex } from "./cassandra-user-index.js";
import {
  type CqlContext,
  optionalNumber,
  read,
  toNumber,
  ttlSeconds,
  write,
} from "./cql-values.js";

/** Tracked messages of a conversation are partitioned by 30-day bucket of sent_at. */
export const bucketMs = 30 * 24 * 3_600_000;
const bucketOf = (sentAt: number): number => Math.floor(sentAt / bucketMs);

/**
 * Messages and conversations (tables conversations, messages,
 * conversation_buckets, messages_by_conversation). A tracked message and a
 * conversation never change once stored (the first write wins), so what this
 * process once read stays true and is kept in memory; the one exception is an erasure of
 * their user (pseudonymise), which this process forgets at once.
 */
export class CassandraMessages implements Omit<MessageStore, "deleteMessages" | "deletedMessages"> {
  readonly #context: CqlContext;
  readonly #cql: ReturnType<typeof statements>;
  readonly #messages: LRUCache<string, TrackedMessage> | undefined;
  readonly #conversations: LRUCache<string, Conversation> | undefined;
  /** Message reads in flight, by tenant and message id. */
  readonly #messageReads = new Map<string, Promise<TrackedMessage | undefined>>();
  readonly #markers: CassandraDeletionMarkers;
  /** Messages this process deleted: a read of one that was in flight meanwhile is not kept. */
  readonly #deleted: LRUCache<string, true> | undefined;

  readonly #index: CassandraUserIndex;

  /** `cacheEntries`: messages and as many conversations kept in memory; 0 keeps none. */
  constructor(
    context: CqlContext,
    cacheEntries: number,
    index: CassandraUserIndex,
    markers: CassandraDeletionMarkers,
  ) {
    this.#context = context;
    this.#index = index;
    this.#markers = markers;
    this.#cql = statements(context.keyspace);
    if (cacheEntries > 0) {
      this.#messages = new LRUCache({ max: cacheEntries });
      this.#deleted = new LRUCache({ max: cacheEntries });
      this.#conversations = new LRUCache({ max: cacheEntries });
    }
  }

  async getConversation(tenant: string, conversationId: string): Promise<Conversation | undefined> {
    const key = `${tenant}\u0000${conversationId}`;
    const known = this.#conversations?.get(key);
    if (known !== undefined) return known;
    const row = (
      await this.#context.session.execute(this.#cql.getConversation, [tenant, conversationId], read)
    ).first();
    // Not remembered when missing: the conversation may be created by the next call.
    if (row === null || row === undefined) return undefined;
    const conversation = conversationFromRow(conversationId, row);
    this.#conversations?.set(key, conversation);
    return conversation;
  }

  async getMessages(
    tenant: string,
    messageIds: readonly string[],
  ): Promise<Map<string, TrackedMessage>> {
    const found = new Map<string, TrackedMessage>();
    const unknown: string[] = [];
    for (const messageId of new Set(messageIds)) {
      // A tracked message never changes (re-tracking with other data is refused), so what
      // this process once read stays true.
      const key = `${tenant}\u0000${messageId}`;
      let known = this.#messages?.get(key);
      // Past its retention a message is gone, as its rows are (their TTL ended).
      if (known?.expiresAt !== undefined && known.expiresAt <= this.#context.clock()) {
        this.#messages?.delete(key);
        known = undefined;
      }
      if (known === undefined) unknown.push(messageId);
      else found.set(messageId, known);
    }
    await mapConcurrently(unknown, this.#context.concurrency, async (messageId) => {
      const key = `${tenant}\u0000${messageId}`;
      const pending = this.#messageReads.get(key);
      // A read sent before this call began may have missed a message tracked since: only a
      // shared answer that found the message is taken as is.
      const message =
        (pending && (await pending)) ?? (await this.#readMessage(key, tenant, messageId));
      if (message !== undefined) found.set(messageId, message);
    });
    return found;
  }

  /** One read of a message, shared with the calls that want it meanwhile. */
  async #readMessage(
    key: string,
    tenant: string,
    messageId: string,
  ): Promise<TrackedMessage | undefined> {
    const reading = (async () => {
      const row = (
        await this.#context.session.execute(this.#cql.getMessage, [tenant, messageId], read)
      ).first();
      if (!row || this.#deleted?.has(key)) return undefined;
      const message = messageFromRow(row);
      this.#messages?.set(key, message);
      return message;
    })();
    this.#messageReads.set(key, reading);
    try {
      return await reading;
    } finally {
      if (this.#messageReads.get(key) === reading) this.#messageReads.delete(key);
    }
  }

  /** Drops a deleted message from this process's memory. */
  forget(tenant: string, messageId: string): void {
    const key = `${tenant}\u0000${messageId}`;
    this.#deleted?.set(key, true);
    this.#messages?.delete(key);
  }

  async insertMessages(tenant: string, tracked: readonly TrackedMessage[]): Promise<Set<string>> {
    const { session, long, concurrency, clock } = this.#context;
    // A deleted id stays deleted: tracking it again changes nothing.
    const deleted = await this.#markers.find(
      tenant,
      tracked.map((m) => m.messageId),
    );
    const messages = tracked.filter((m) => !deleted.has(m.messageId));
    // Before the messages: found by an export or an erasure of their sender and receiver.
    await this.#index.noteMessages(tenant, messages);
    const conversations = new Map(messages.map((m) => [m.conversationId, m]));
    await mapConcurrently([...conversations.values()], concurrency, async (message) => {
      if ((await this.getConversation(tenant, message.conversationId)) !== undefined) return;
      const pair = c2cParticipants(message);
      const { conversationId, conversationType } = message;
      // First writer wins (IF NOT EXISTS), as with INSERT OR IGNORE; the domain checked the
      // data beforehand. Either way the answer says what is stored for good.
      const result = await session.execute(
        this.#cql.insertConversation,
        [tenant, conversationId, conversationType, pair[0] ?? "", pair[1] ?? ""],
        write,
      );
      this.#conversations?.set(
        `${tenant}\u0000${conversationId}`,
        result.wasApplied()
          ? { conversationId, type: conversationType, participants: pair }
          : conversationFromRow(conversationId, result.first()),
      );
    });

    const existing = new Set<string>(deleted.keys());
    await mapConcurrently(messages, concurrency, async (message) => {
      const trackId = types.Uuid.random();
      const expiresAt = message.expiresAt === undefined ? null : long(message.expiresAt);
      const ttl = ttlSeconds(message.expiresAt, clock());
      const result = await session.execute(
        this.#cql.insertMessage,
        [
          tenant,
          message.messageId,
          message.conversationId,
          message.conversationType,
          message.senderId,
          long(message.sentAt),
          message.receiverId,
          trackId,
          expiresAt,
          ttl,
        ],
        write, // a retry finds its own track_id
      );
      let stored = message;
      if (!result.wasApplied()) {
        const row = result.first();
        if (String(row.get("track_id")) !== String(trackId)) {
          existing.add(message.messageId);
          stored = messageFromRow(row);
        }
      }
      // Always (re)written from the stored message: finishes a tracking cut short.
      const bucket = bucketOf(stored.sentAt);
      await Promise.all([
        session.execute(
          this.#cql.insertBucket,
          [tenant, stored.conversationId, long(bucket)],
          write,
        ),
        session.execute(
          this.#cql.insertMessageByConversation,
          [
            tenant,
            stored.conversationId,
            long(bucket),
            long(stored.sentAt),
            stored.messageId,
            stored.conversationType,
            stored.senderId,
            stored.receiverId,
            stored.expiresAt === undefined ? null : long(stored.expiresAt),
            ttlSeconds(stored.expiresAt, clock()),
          ],
          write,
        ),
      ]);
      this.#messages?.set(`${tenant}\u0000${stored.messageId}`, stored);
    });
    return existing;
  }

  /**
   * Replaces the user's id in the message (sender, C2C receiver), its row by conversation and
   * its C2C conversation with `erasedUserId`, and forgets them here. Other instances may
   * remember the message as it was until they evict it or restart (docs/operations.md).
   * Returns whether the message named the user.
   */
  async pseudonymise(tenant: string, messageId: string, userId: string): Promise<boolean> {
    const { session, long, clock } = this.#context;
    const row = (await session.execute(this.#cql.getMessage, [tenant, messageId], read)).first();
    if (!row) return false;
    const stored = messageFromRow(row);
    if (stored.senderId !== userId && stored.receiverId !== userId) return false;
    const erased = (id: string) => (id === userId ? erasedUserId : id);
    const message = {
      ...stored,
      senderId: erased(stored.senderId),
      receiverId: erased(stored.receiverId),
    };
    const ttl = ttlSeconds(message.expiresAt, clock());
    await session.execute(
      this.#cql.pseudonymiseMessage,
      [ttl, message.senderId, message.receiverId, tenant, messageId],
      write,
    );
    await session.execute(
      this.#cql.insertMessageByConversation,
      [
        tenant,
        message.conversationId,
        long(bucketOf(message.sentAt)),
        long(message.sentAt),
        messageId,
        message.conversationType,
        message.senderId,
        message.receiverId,
        message.expiresAt === undefined ? null : long(message.expiresAt),
        ttl,
      ],
      { ...write, timestamp: this.#context.writeClock.nextMicros() },
    );
    this.#messages?.delete(`${tenant}\u0000${messageId}`);
    if (message.conversationType === "c2c") {
      this.#conversations?.delete(`${tenant}\u0000${message.conversationId}`);
      const conversation = await this.getConversation(tenant, message.conversationId);
      if (conversation?.participants.includes(userId)) {
        const [a, b] = conversation.participants.map(erased);
        await session.execute(
          this.#cql.pseudonymiseConversation,
          [a ?? "", b ?? "", tenant, message.conversationId],
          write,
        );
      }
      this.#conversations?.delete(`${tenant}\u0000${message.conversationId}`);
    }
    return true;
  }

  async listMessagesSentBetween(
    tenant: string,
    conversationId: string,
    range: { readonly after: number | undefined; readonly upTo: number },
    cursor: MessageCursor | undefined,
    limit: number,
  ): Promise<TrackedMessage[]> {
    const { session, long } = this.#context;
    const from = cursor?.sentAt ?? range.after ?? 0;
    if (from > range.upTo || limit <= 0) return [];
    const buckets = await session.execute(
      this.#cql.bucketsBetween,
      [tenant, conversationId, long(bucketOf(from)), long(bucketOf(range.upTo))],
      read,
    );
    const found: TrackedMessage[] = [];
    for (const bucketRow of buckets.rows) {
      const bucket = bucketRow.get("bucket");
      const remaining = limit - found.length;
      const upTo = long(range.upTo);
      const result =
        cursor !== undefined
          ? await session.execute(
              this.#cql.messagesAfterCursor,
              [
                tenant,
                conversationId,
                bucket,
                long(cursor.sentAt),
                cursor.messageId,
                upTo,
                remaining,
              ],
              read,
            )
          : range.after !== undefined
            ? await session.execute(
                this.#cql.messagesBetween,
                [tenant, conversationId, bucket, long(range.after), upTo, remaining],
                read,
              )
            : await session.execute(
                this.#cql.messagesUpTo,
                [tenant, conversationId, bucket, upTo, remaining],
                read,
              );
      found.push(...result.rows.map(messageFromRow));
      if (found.length >= limit) break;
    }
    return found;
  }
}

function messageFromRow(row: types.Row): TrackedMessage {
  return {
    conversationId: row.get("conversation_id") as string,
    conversationType: row.get("conversation_type") as ConversationType,
    messageId: row.get("message_id") as string,
    senderId: row.get("sender_id") as string,
    sentAt: toNumber(row.get("sent_at")),
    receiverId: row.get("receiver_id") as string,
    ...expiryOf(row),
  };
}

function expiryOf(row: types.Row): { readonly expiresAt?: number } {
  const expiresAt = optionalNumber(row.get("expires_at"));
  return expiresAt === undefined ? {} : { expiresAt };
}

function conversationFromRow(conversationId: string, row: types.Row): Conversation {
  const type = row.get("type") as ConversationType;
  const participants = [row.get("participant_a") as string, row.get("participant_b") as string];
  return { conversationId, type, participants: type === "c2c" ? participants : [] };
}

function statements(keyspace: string) {
  const t = (table: string) => `${keyspace}.${table}`;
  const messageColumns =
    "conversation_id, conversation_type, message_id, sender_id, sent_at, receiver_id, expires_at";
  const byConversation = `SELECT ${messageColumns}
    FROM ${t("messages_by_conversation")} WHERE tenant = ? AND conversation_id = ? AND bucket = ?`;
  return {
    getConversation: `SELECT type, participant_a, participant_b FROM ${t("conversations")}
      WHERE tenant = ? AND conversation_id = ?`,
    insertConversation: `INSERT INTO ${t("conversations")}
      (tenant, conversation_id, type, participant_a, participant_b) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS`,
    getMessage: `SELECT ${messageColumns} FROM ${t("messages")} WHERE tenant = ? AND message_id = ?`,
    insertMessage: `INSERT INTO ${t("messages")}
      (tenant, message_id, conversation_id, conversation_type, sender_id, sent_at, receiver_id, track_id,
       expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?`,
    insertBucket: `INSERT INTO ${t("conversation_buckets")} (tenant, conversation_id, bucket) VALUES (?, ?, ?)`,
    bucketsBetween: `SELECT bucket FROM ${t("conversation_buckets")}
      WHERE tenant = ? AND conversation_id = ? AND bucket >= ? AND bucket <= ?`,
    insertMessageByConversation: `INSERT INTO ${t("messages_by_conversation")}
      (tenant, conversation_id, bucket, sent_at, message_id, conversation_type, sender_id, receiver_id,
       expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
    // With the message's remaining TTL: rewritten cells must expire with the rest of the row.
    pseudonymiseMessage: `UPDATE ${t("messages")} USING TTL ? SET sender_id = ?, receiver_id = ?
      WHERE tenant = ? AND message_id = ? IF EXISTS`,
    pseudonymiseConversation: `UPDATE ${t("conversations")} SET participant_a = ?, participant_b = ?
      WHERE tenant = ? AND conversation_id = ? IF EXISTS`,
    messagesAfterCursor: `${byConversation} AND (sent_at, message_id) > (?, ?) AND sent_at <= ? LIMIT ?`,
    messagesBetween: `${byConversation} AND sent_at > ? AND sent_at <= ? LIMIT ?`,
    messagesUpTo: `${byConversation} AND sent_at <= ? LIMIT ?`,
  };
}
