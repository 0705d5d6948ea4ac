import { chunk } from "../chunk.js";
import type {
  Chunk,
  Cursor,
  ErasureRecord,
  UserDataRecord,
  UserDataStore,
} from "../user-data-store.js";
import type { CassandraHorizons } from "./cassandra-horizons.js";
import type { CassandraMembershipHistory } from "./cassandra-membership-history.js";
import type { CassandraMessages } from "./cassandra-messages.js";
import type { CassandraReaderReceipts } from "./cassandra-reader-receipts.js";
import type { CassandraReceiptLedger } from "./cassandra-receipt-ledger.js";
import type { CassandraUserIndex } from "./cassandra-user-index.js";
import { type CqlContext, read, write } from "./cql-values.js";

/** Conversations of the user read from its lookup at once. */
const conversationPage = 100;

/** The modules whose rows an erasure removes; each owns its tables' statements and caches. */
export interface UserDataParts {
  readonly index: CassandraUserIndex;
  readonly messages: CassandraMessages;
  readonly ledger: CassandraReceiptLedger;
  readonly readerReceipts: CassandraReaderReceipts;
  readonly horizons: CassandraHorizons;
  readonly history: CassandraMembershipHistory;
}

/**
 * One user's data in Cassandra: found through the user's lookups (CassandraUserIndex), removed
 * by the module owning each table, and the erasure's progress (user_erasures, saved by a
 * lightweight transaction on its version). A step's cursor is the conversation it is in: the
 * rows it removed are gone, so going on in that conversation finds the rest.
 */
export class CassandraUserData implements UserDataStore {
  readonly #context: CqlContext;
  readonly #parts: UserDataParts;
  readonly #cql: ReturnType<typeof statements>;

  constructor(context: CqlContext, parts: UserDataParts) {
    this.#context = context;
    this.#parts = parts;
    this.#cql = statements(context.keyspace);
  }

  async erasureOf(tenant: string, userId: string): Promise<ErasureRecord | undefined> {
    const row = (
      await this.#context.session.execute(this.#cql.getErasure, [tenant, userId], read)
    ).first();
    return row ? (JSON.parse(row.get("record") as string) as ErasureRecord) : undefined;
  }

  async saveErasure(
    tenant: string,
    userId: string,
    record: ErasureRecord,
    expectedVersion: number | undefined,
  ): Promise<boolean> {
    const json = JSON.stringify(record);
    const result =
      expectedVersion === undefined
        ? await this.#context.session.execute(
            this.#cql.insertErasure,
            [tenant, userId, record.version, json],
            write,
          )
        : await this.#context.session.execute(
            this.#cql.updateErasure,
            [record.version, json, tenant, userId, expectedVersion],
            write,
          );
    // Not applied after a driver retry of our own applied write: the caller reads the record
    // again and finds its own.
    return result.wasApplied();
  }

  eraseHorizonsOf(tenant: string, userId: string, cursor: Cursor, limit: number) {
    const { horizons } = this.#parts;
    return this.#inConversations(tenant, userId, cursor, limit, (conversationId) =>
      horizons.eraseReader(tenant, conversationId, userId),
    );
  }

  eraseHorizonSetTimesOf(tenant: string, userId: string, cursor: Cursor, limit: number) {
    const { horizons } = this.#parts;
    return this.#inConversations(tenant, userId, cursor, limit, (conversationId) =>
      horizons.eraseSetTimes(tenant, conversationId, userId),
    );
  }

  eraseReceiptsOf(tenant: string, userId: string, cursor: Cursor, limit: number) {
    const { readerReceipts } = this.#parts;
    return this.#inConversations(tenant, userId, cursor, limit, (conversationId, most) =>
      readerReceipts.eraseReaderIn(tenant, conversationId, userId, most),
    );
  }

  eraseMembershipsOf(tenant: string, userId: string, cursor: Cursor, limit: number) {
    const { history, messages } = this.#parts;
    return this.#inConversations(tenant, userId, cursor, limit, async (conversationId) => {
      // A group may have members before any message; a C2C conversation never has any.
      const conversation = await messages.getConversation(tenant, conversationId);
      if (conversation?.type === "c2c") return 0;
      return history.eraseUser(tenant, conversationId, userId);
    });
  }

  async pseudonymiseMessagesOf(
    tenant: string,
    userId: string,
    _cursor: Cursor,
    limit: number,
  ): Promise<Chunk> {
    const { index, messages } = this.#parts;
    const ids = await index.messagesOf(tenant, userId, limit);
    let removed = 0;
    for (const messageId of ids) {
      if (await messages.pseudonymise(tenant, messageId, userId)) removed++;
      // After the message: an erasure cut short finds it again.
      await index.forgetMessage(tenant, userId, messageId);
    }
    return { removed, cursor: ids.length < limit ? undefined : "" };
  }

  async eraseUserIndexOf(tenant: string, userId: string): Promise<Chunk> {
    return { removed: await this.#parts.index.forgetUser(tenant, userId), cursor: undefined };
  }

  async *exportUserData(tenant: string, userId: string): AsyncIterable<UserDataRecord> {
    const { index, ledger, readerReceipts, horizons, history, messages } = this.#parts;
    const conversations = () => index.conversations(tenant, userId);
    for await (const conversationId of conversations()) {
      for await (const { messageId, readAt } of readerReceipts.receiptsOf(
        tenant,
        conversationId,
        userId,
      )) {
        // Records of schema version 1 have no read time; their readers row has it.
        const at = readAt ?? (await ledger.readAtOf(tenant, messageId, userId));
        if (at !== undefined) yield { kind: "receipt", conversationId, messageId, readAt: at };
      }
    }
    for await (const conversationId of conversations()) {
      const readUpTo = await horizons.getHorizon(tenant, conversationId, userId);
      if (readUpTo !== undefined) yield { kind: "horizon", conversationId, readUpTo };
    }
    for await (const conversationId of conversations()) {
      for (const note of await horizons.setsOf(tenant, conversationId, userId)) {
        yield { kind: "horizon_set", conversationId, ...note };
      }
    }
    for await (const groupId of conversations()) {
      const intervals = await history.intervalsOfUser(tenant, groupId, userId);
      for (const { joinedAt, leftAt } of intervals.toReversed()) {
        yield { kind: "membership", groupId, joinedAt, leftAt };
      }
    }
    const ids: string[] = [];
    for await (const messageId of index.messages(tenant, userId)) ids.push(messageId);
    for (const part of chunk(ids, 100)) {
      const found = await messages.getMessages(tenant, part);
      for (const messageId of part) {
        const message = found.get(messageId);
        // Noted before it was tracked: a tracking refused (other data) is not the user's.
        if (message?.senderId === userId || message?.receiverId === userId) {
          yield { kind: "message", message };
        }
      }
    }
  }

  /**
   * Goes through the user's conversations from `cursor` on, removing up to what is left of
   * `limit` in each with `erase` (which returns how many it removed); visits `limit`
   * conversations at most, so that a user in many conversations with little in each is
   * bounded too.
   */
  async #inConversations(
    tenant: string,
    userId: string,
    cursor: Cursor,
    limit: number,
    erase: (conversationId: string, most: number) => Promise<number>,
  ): Promise<Chunk> {
    let removed = 0;
    let visited = 0;
    let from = cursor;
    for (;;) {
      const page = await this.#parts.index.conversationsFrom(
        tenant,
        userId,
        from,
        conversationPage,
      );
      for (const conversationId of page) {
        const most = limit - removed;
        removed += await erase(conversationId, most);
        // Maybe more here: the next chunk starts in this conversation again.
        if (removed >= limit) return { removed, cursor: conversationId };
        if (++visited >= limit) return { removed, cursor: after(conversationId) };
      }
      const last = page.at(-1);
      if (last === undefined || page.length < conversationPage)
        return { removed, cursor: undefined };
      from = after(last);
    }
  }
}

/** The least id after `id`: ids hold no control characters. */
const after = (id: string): string => `${id}\u0000`;

function statements(keyspace: string) {
  const t = (table: string) => `${keyspace}.${table}`;
  return {
    getErasure: `SELECT version, record FROM ${t("user_erasures")} WHERE tenant = ? AND user_id = ?`,
    insertErasure: `INSERT INTO ${t("user_erasures")} (tenant, user_id, version, record)
      VALUES (?, ?, ?, ?) IF NOT EXISTS`,
    updateErasure: `UPDATE ${t("user_erasures")} SET version = ?, record = ?
      WHERE tenant = ? AND user_id = ? IF version = ?`,
  };
}
