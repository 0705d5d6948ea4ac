import type { TrackedMessage } from "../../domain/model.js";
import { chunk } from "../chunk.js";
import { mapConcurrently } from "../map-concurrently.js";
import type { Params } from "./cql-session.js";
import { type CqlContext, read, ttlSeconds, write } from "./cql-values.js";

/** Rows of one user's lookups per single-partition batch. */
const entryBatch = 100;

/**
 * Where one user's data is (tables conversations_by_user, messages_by_user): every other table
 * is keyed by conversation, message or group, so export and erasure look here first. Each
 * writer notes its fact here before writing it, so a lookup never misses a fact; it may name a
 * conversation that holds nothing (a write that failed after it). Nothing is remembered in
 * memory: a user erased and then seen again must be noted again, on every instance.
 */
export class CassandraUserIndex {
  readonly #context: CqlContext;
  readonly #cql: ReturnType<typeof statements>;

  constructor(context: CqlContext) {
    this.#context = context;
    this.#cql = statements(context.keyspace);
  }

  /** Notes that each user has data in the conversation: one single-partition write per user. */
  async noteConversation(
    tenant: string,
    userIds: readonly string[],
    conversationId: string,
  ): Promise<void> {
    await mapConcurrently([...new Set(userIds)], this.#context.concurrency, (userId) =>
      this.#context.session.execute(
        this.#cql.insertConversation,
        [tenant, userId, conversationId],
        write,
      ),
    );
  }

  /** Notes the conversations of a reader: one single-partition batch. */
  async noteConversationsOf(
    tenant: string,
    userId: string,
    conversationIds: readonly string[],
  ): Promise<void> {
    const rows = [...new Set(conversationIds)].map((conversationId) => ({
      cql: this.#cql.insertConversation,
      params: [tenant, userId, conversationId] as Params,
    }));
    await this.#writeBatches(rows);
  }

  /** Notes each message under its sender and, C2C, its receiver: a batch per user. */
  async noteMessages(tenant: string, messages: readonly TrackedMessage[]): Promise<void> {
    const byUser = new Map<string, { cql: string; params: Params }[]>();
    const add = (userId: string, cql: string, params: Params) => {
      if (userId === "") return;
      const rows = byUser.get(userId) ?? [];
      rows.push({ cql, params });
      byUser.set(userId, rows);
    };
    for (const message of messages) {
      for (const userId of new Set([message.senderId, message.receiverId])) {
        add(userId, this.#cql.insertConversation, [tenant, userId, message.conversationId]);
        // Expires with the message under the tenant's retention, as every row about it does.
        add(userId, this.#cql.insertMessage, [
          tenant,
          userId,
          message.messageId,
          ttlSeconds(message.expiresAt, this.#context.clock()),
        ]);
      }
    }
    await mapConcurrently([...byUser.values()], this.#context.concurrency, (rows) =>
      this.#writeBatches(rows),
    );
  }

  /** The user's conversations from `from` on (inclusive), in id order, at most `limit`. */
  async conversationsFrom(
    tenant: string,
    userId: string,
    from: string | undefined,
    limit: number,
  ): Promise<string[]> {
    const result = await this.#context.session.execute(
      this.#cql.conversationsFrom,
      [tenant, userId, from ?? "", limit],
      read,
    );
    return result.rows.map((row) => row.get("conversation_id") as string);
  }

  /** The user's conversations, all of them, page by page. */
  async *conversations(tenant: string, userId: string): AsyncGenerator<string> {
    for await (const row of this.#context.session.rows(
      this.#cql.conversationsFrom,
      [tenant, userId, "", 1_000_000_000],
      { ...read, fetchSize: 1_000 },
    )) {
      yield row.get("conversation_id") as string;
    }
  }

  /** The first `limit` messages noted under the user. */
  async messagesOf(tenant: string, userId: string, limit: number): Promise<string[]> {
    const result = await this.#context.session.execute(
      this.#cql.messagesAfter,
      [tenant, userId, "", limit],
      read,
    );
    return result.rows.map((row) => row.get("message_id") as string);
  }

  /** The messages noted under the user, page by page. */
  async *messages(tenant: string, userId: string): AsyncGenerator<string> {
    for await (const row of this.#context.session.rows(
      this.#cql.messagesAfter,
      [tenant, userId, "", 1_000_000_000],
      { ...read, fetchSize: 1_000 },
    )) {
      yield row.get("message_id") as string;
    }
  }

  async forgetMessage(tenant: string, userId: string, messageId: string): Promise<void> {
    await this.#context.session.execute(this.#cql.deleteMessage, [tenant, userId, messageId], {
      ...write,
      timestamp: this.#context.writeClock.nextMicros(),
    });
  }

  /** Deletes both of the user's lookups (two partition tombstones); true if any entry was there. */
  async forgetUser(tenant: string, userId: string): Promise<number> {
    const { session } = this.#context;
    const left = (await this.conversationsFrom(tenant, userId, undefined, 1)).length;
    const timestamp = this.#context.writeClock.nextMicros();
    await Promise.all([
      session.execute(this.#cql.deleteConversations, [tenant, userId], { ...write, timestamp }),
      session.execute(this.#cql.deleteMessages, [tenant, userId], { ...write, timestamp }),
    ]);
    return left;
  }

  async #writeBatches(rows: readonly { cql: string; params: Params }[]): Promise<void> {
    const [only] = rows;
    if (rows.length === 1 && only !== undefined) {
      await this.#context.session.execute(only.cql, only.params, write);
      return;
    }
    for (const part of chunk(rows, entryBatch)) {
      await this.#context.session.batch(part, { ...write, logged: false });
    }
  }
}

function statements(keyspace: string) {
  const t = (table: string) => `${keyspace}.${table}`;
  return {
    insertConversation: `INSERT INTO ${t("conversations_by_user")} (tenant, user_id, conversation_id)
      VALUES (?, ?, ?)`,
    insertMessage: `INSERT INTO ${t("messages_by_user")} (tenant, user_id, message_id) VALUES (?, ?, ?)
      USING TTL ?`,
    conversationsFrom: `SELECT conversation_id FROM ${t("conversations_by_user")}
      WHERE tenant = ? AND user_id = ? AND conversation_id >= ? LIMIT ?`,
    messagesAfter: `SELECT message_id FROM ${t("messages_by_user")}
      WHERE tenant = ? AND user_id = ? AND message_id > ? LIMIT ?`,
    deleteMessage: `DELETE FROM ${t("messages_by_user")} WHERE tenant = ? AND user_id = ? AND message_id = ?`,
    deleteConversations: `DELETE FROM ${t("conversations_by_user")} WHERE tenant = ? AND user_id = ?`,
    deleteMessages: `DELETE FROM ${t("messages_by_user")} WHERE tenant = ? AND user_id = ?`,
  };
}
