import type { DatabaseSync, StatementSync } from "node:sqlite";
import {
  type ConversationType,
  type Member,
  type PendingChange,
  pendingReceipt,
  type ReadMember,
  type TrackedMessage,
} from "../../domain/model.js";
import { pendingChangeKey } from "../pending-change-key.js";
import type {
  Conversation,
  FirstPageRequest,
  MembershipAt,
  MembershipInterval,
  MembershipProbe,
  MessageCursor,
  NewReceipt,
  ReceiptStore,
  RecordedReceipt,
} from "../receipt-store.js";
import { type SqliteWriteBatcher, writeBatcherOf } from "./sqlite-write-batcher.js";

interface MessageRow {
  conversation_id: string;
  conversation_type: string;
  message_id: string;
  sender_id: string;
  sent_at: number;
  receiver_id: string;
}

const toMessage = (row: MessageRow): TrackedMessage => ({
  conversationId: row.conversation_id,
  conversationType: row.conversation_type as ConversationType,
  messageId: row.message_id,
  senderId: row.sender_id,
  sentAt: row.sent_at,
  receiverId: row.receiver_id,
});

const messageColumns =
  "conversation_id, conversation_type, message_id, sender_id, sent_at, receiver_id";

/** SQLite caps bound parameters per statement; id lists are bounded well below this anyway. */
const maxInList = 500;

/**
 * The embedded store: one SQLite file through `node:sqlite`. Calls are
 * synchronous underneath, so each method is atomic with respect to the others
 * in this process; multi-row writes run in one transaction.
 */
export class SqliteReceiptStore implements ReceiptStore {
  readonly #db: DatabaseSync;
  readonly #sql: ReturnType<typeof prepareStatements>;
  /** Every write goes through the connection's group commit. */
  readonly #writes: SqliteWriteBatcher;
  readonly #byIdsStatements = new Map<number, StatementSync>();

  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#writes = writeBatcherOf(db);
    this.#sql = prepareStatements(db);
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
    const found = new Map<string, TrackedMessage>();
    for (const chunk of chunks([...new Set(messageIds)], maxInList)) {
      const rows = this.#messagesByIds(chunk.length).all(
        tenant,
        ...chunk,
      ) as unknown as MessageRow[];
      for (const row of rows) found.set(row.message_id, toMessage(row));
    }
    return found;
  }

  /** Prepared once per list length: GetReceipts and SendReceipts ask with 1 to 100 ids. */
  #messagesByIds(count: number): StatementSync {
    let statement = this.#byIdsStatements.get(count);
    if (statement === undefined) {
      statement = this.#db.prepare(
        `SELECT ${messageColumns} FROM messages WHERE tenant = ? AND message_id IN (${placeholders(count)})`,
      );
      this.#byIdsStatements.set(count, statement);
    }
    return statement;
  }

  async insertMessages(tenant: string, messages: readonly TrackedMessage[]): Promise<Set<string>> {
    const existing = new Set<string>();
    await this.#writes.write(() => {
      for (const message of messages) {
        const [a, b] = [message.senderId, message.receiverId].sort();
        this.#sql.insertConversation.run(
          tenant,
          message.conversationId,
          message.conversationType,
          message.conversationType === "c2c" ? (a as string) : "",
          message.conversationType === "c2c" ? (b as string) : "",
        );
        const result = this.#sql.insertMessage.run(
          tenant,
          message.messageId,
          message.conversationId,
          message.conversationType,
          message.senderId,
          message.sentAt,
          message.receiverId,
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
    }) as unknown as MessageRow[];
    return rows.map(toMessage);
  }

  async insertReceipts(
    tenant: string,
    readerId: string,
    receipts: readonly NewReceipt[],
  ): Promise<RecordedReceipt[]> {
    return this.#writes.write(() =>
      receipts.map(({ message, readAt }) => {
        const inserted =
          this.#sql.insertReceipt.run(
            tenant,
            message.messageId,
            readerId,
            readAt,
            message.conversationId,
            message.sentAt,
          ).changes > 0;
        if (inserted) {
          this.#sql.addToReadCount.run(1, tenant, message.messageId);
          this.#keepPending(pendingReceipt(tenant, readerId, message, readAt));
        }
        const { read_count } = this.#sql.readCount.get(tenant, message.messageId) as {
          read_count: number;
        };
        return { messageId: message.messageId, inserted, readCount: read_count };
      }),
    );
  }

  async readCounts(
    tenant: string,
    messages: readonly TrackedMessage[],
  ): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    for (const message of messages) {
      const row = this.#sql.readCount.get(tenant, message.messageId) as
        | { read_count: number }
        | undefined;
      counts.set(message.messageId, row?.read_count ?? 0);
    }
    return counts;
  }

  async listReaders(
    tenant: string,
    message: TrackedMessage,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<ReadMember[]> {
    const rows = this.#sql.listReaders.all(
      tenant,
      message.messageId,
      afterUserId ?? "",
      limit,
    ) as unknown as { reader_id: string; read_at: number }[];
    return rows.map((row) => ({ userId: row.reader_id, readAt: row.read_at }));
  }

  async receiverReadTimes(
    tenant: string,
    messages: readonly TrackedMessage[],
  ): Promise<Map<string, number>> {
    const times = new Map<string, number>();
    for (const { messageId, receiverId } of messages) {
      const row = this.#sql.readAt.get(tenant, messageId, receiverId) as
        | { read_at: number }
        | undefined;
      if (row !== undefined) times.set(messageId, row.read_at);
    }
    return times;
  }

  async listFirstPages(
    tenant: string,
    pages: readonly FirstPageRequest[],
    limit: number,
  ): Promise<ReadMember[][]> {
    const lists: ReadMember[][] = [];
    for (const { message, filter } of pages) {
      lists.push(
        filter === "read"
          ? await this.listReaders(tenant, message, undefined, limit)
          : (await this.listUnreadMembers(tenant, message, undefined, limit)).map((userId) => ({
              userId,
            })),
      );
    }
    return lists;
  }

  async hasRead(
    tenant: string,
    readerId: string,
    messageIds: readonly string[],
  ): Promise<Set<string>> {
    const read = new Set<string>();
    for (const messageId of messageIds) {
      if (this.#sql.hasReceipt.get(tenant, messageId, readerId) !== undefined) read.add(messageId);
    }
    return read;
  }

  async deleteReceiptsFrom(
    tenant: string,
    groupId: string,
    userId: string,
    fromSentAt: number,
  ): Promise<string[]> {
    return this.#writes.write(() => {
      const doomed = this.#sql.receiptsOfReaderFrom.all(
        tenant,
        groupId,
        userId,
        fromSentAt,
      ) as unknown as { message_id: string }[];
      for (const { message_id } of doomed) {
        this.#sql.deleteReceipt.run(tenant, message_id, userId);
        this.#sql.addToReadCount.run(-1, tenant, message_id);
      }
      return doomed.map((row) => row.message_id);
    });
  }

  async getHorizon(
    tenant: string,
    conversationId: string,
    readerId: string,
  ): Promise<number | undefined> {
    const row = this.#sql.getHorizon.get(tenant, conversationId, readerId) as
      | { read_up_to: number }
      | undefined;
    return row?.read_up_to;
  }

  async advanceHorizon(
    tenant: string,
    conversationId: string,
    readerId: string,
    upTo: number,
    at: number,
  ): Promise<{ readonly previous: number | undefined; readonly current: number }> {
    return this.#writes.write(() => {
      const row = this.#sql.getHorizon.get(tenant, conversationId, readerId) as
        | { read_up_to: number }
        | undefined;
      const previous = row?.read_up_to;
      const current = Math.max(previous ?? upTo, upTo);
      if (current !== previous) {
        this.#sql.putHorizon.run(tenant, conversationId, readerId, current);
        this.#keepPending({
          kind: "horizon",
          tenant,
          conversationId,
          readerId,
          readUpTo: current,
          at,
        });
      }
      return { previous, current };
    });
  }

  async pendingChanges(before: number, limit: number): Promise<PendingChange[]> {
    const rows = this.#sql.pendingBefore.all(before, limit) as unknown as { payload: string }[];
    return rows.map((row) => JSON.parse(row.payload) as PendingChange);
  }

  async clearPendingChanges(changes: readonly PendingChange[]): Promise<void> {
    if (changes.length === 0) return;
    await this.#writes.write(() => {
      for (const change of changes) {
        this.#sql.clearPending.run(change.tenant, pendingChangeKey(change));
      }
    });
  }

  /** Inside the write that stores the fact: the fact and its pending change commit together. */
  #keepPending(change: PendingChange): void {
    const at = change.kind === "receipt" ? change.readAt : change.at;
    this.#sql.keepPending.run(change.tenant, pendingChangeKey(change), JSON.stringify(change), at);
  }

  async noteHorizonSet(
    tenant: string,
    conversationId: string,
    readerId: string,
    readUpTo: number,
    setAt: number,
  ): Promise<void> {
    await this.#writes.write(() => {
      this.#sql.noteHorizonSet.run(tenant, conversationId, readerId, readUpTo, setAt);
    });
  }

  async horizonSetTimes(
    tenant: string,
    conversationId: string,
    readerId: string,
    times: readonly number[],
  ): Promise<(number | undefined)[]> {
    return times.map((at) => {
      const row = this.#sql.horizonSetAt.get(tenant, conversationId, readerId, at) as
        | { set_at: number }
        | undefined;
      return row?.set_at;
    });
  }

  async horizonsFrom(
    tenant: string,
    conversationId: string,
    at: number,
  ): Promise<{ readonly readerId: string; readonly readUpTo: number }[]> {
    const rows = this.#sql.horizonsFrom.all(tenant, conversationId, at) as unknown as {
      reader_id: string;
      read_up_to: number;
    }[];
    return rows.map((row) => ({ readerId: row.reader_id, readUpTo: row.read_up_to }));
  }

  async latestMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
  ): Promise<Map<string, MembershipInterval>> {
    const latest = new Map<string, MembershipInterval>();
    for (const userId of userIds) {
      const row = this.#sql.latestMembership.get(tenant, groupId, userId) as
        | { joined_at: number; left_at: number | null }
        | undefined;
      if (row !== undefined) {
        latest.set(userId, { joinedAt: row.joined_at, leftAt: row.left_at ?? undefined });
      }
    }
    return latest;
  }

  async openMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
    joinedAt: number,
  ): Promise<void> {
    await this.#writes.write(() => {
      for (const userId of userIds) this.#sql.openMembership.run(tenant, groupId, userId, joinedAt);
      this.#sql.bumpGroup.run(tenant, groupId, userIds.length, joinedAt);
    });
  }

  async closeMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
    leftAt: number,
  ): Promise<void> {
    await this.#writes.write(() => {
      let closed = 0;
      for (const userId of userIds) {
        closed += Number(this.#sql.closeMembership.run(leftAt, tenant, groupId, userId).changes);
      }
      this.#sql.bumpGroup.run(tenant, groupId, -closed, leftAt);
    });
  }

  async wasMemberAt(
    tenant: string,
    groupId: string,
    userId: string,
    times: readonly number[],
  ): Promise<boolean[]> {
    const intervals = this.#sql.membershipsOfUser.all(tenant, groupId, userId) as unknown as {
      joined_at: number;
      left_at: number | null;
    }[];
    return times.map((t) =>
      intervals.some((i) => i.joined_at <= t && (i.left_at === null || i.left_at > t)),
    );
  }

  async memberCountAt(tenant: string, groupId: string, at: number): Promise<number> {
    const group = this.#sql.getGroup.get(tenant, groupId) as
      | { member_count: number; last_change_at: number }
      | undefined;
    if (group === undefined) return 0;
    if (at >= group.last_change_at) return group.member_count;
    const row = this.#sql.countMembersAt.get(tenant, groupId, at, at) as { n: number };
    return row.n;
  }

  async membershipAt(
    tenant: string,
    groupId: string,
    probes: readonly MembershipProbe[],
  ): Promise<MembershipAt[]> {
    return Promise.all(
      probes.map(async ({ userId, at }) => ({
        memberCount: await this.memberCountAt(tenant, groupId, at),
        wasMember: (await this.wasMemberAt(tenant, groupId, userId, [at]))[0] === true,
      })),
    );
  }

  async listUnreadMembers(
    tenant: string,
    message: TrackedMessage,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<string[]> {
    const rows = this.#sql.unreadMembers.all({
      tenant,
      group: message.conversationId,
      at: message.sentAt,
      after: afterUserId ?? "",
      sender: message.senderId,
      message: message.messageId,
      limit,
    }) as unknown as { user_id: string }[];
    return rows.map((row) => row.user_id);
  }

  async listCurrentMembers(
    tenant: string,
    groupId: string,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<Member[]> {
    const rows = this.#sql.currentMembers.all(
      tenant,
      groupId,
      afterUserId ?? "",
      limit,
    ) as unknown as { user_id: string; joined_at: number }[];
    return rows.map((row) => ({ userId: row.user_id, joinedAt: row.joined_at }));
  }

  async ping(): Promise<void> {
    this.#db.prepare("SELECT 1").get();
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
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
      `INSERT OR IGNORE INTO messages (tenant, message_id, conversation_id, conversation_type, sender_id, sent_at, receiver_id)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    messagesBetween: q(
      `SELECT ${messageColumns} FROM messages
       WHERE tenant = $tenant AND conversation_id = $conversation
         AND sent_at > $after AND sent_at <= $upTo
         AND (sent_at > $cursorSentAt OR (sent_at = $cursorSentAt AND message_id > $cursorId))
       ORDER BY sent_at, message_id LIMIT $limit`,
    ),
    insertReceipt: q(
      `INSERT OR IGNORE INTO receipts (tenant, message_id, reader_id, read_at, conversation_id, sent_at)
       VALUES (?, ?, ?, ?, ?, ?)`,
    ),
    keepPending: q(
      "INSERT OR REPLACE INTO outbox (tenant, key, payload, created_at) VALUES (?, ?, ?, ?)",
    ),
    pendingBefore: q(
      "SELECT payload FROM outbox WHERE created_at < ? ORDER BY created_at, tenant, key LIMIT ?",
    ),
    clearPending: q("DELETE FROM outbox WHERE tenant = ? AND key = ?"),
    deleteReceipt: q("DELETE FROM receipts WHERE tenant = ? AND message_id = ? AND reader_id = ?"),
    addToReadCount: q(
      "UPDATE messages SET read_count = read_count + ? WHERE tenant = ? AND message_id = ?",
    ),
    readCount: q("SELECT read_count FROM messages WHERE tenant = ? AND message_id = ?"),
    listReaders: q(
      `SELECT reader_id, read_at FROM receipts
       WHERE tenant = ? AND message_id = ? AND reader_id > ? ORDER BY reader_id LIMIT ?`,
    ),
    readAt: q("SELECT read_at FROM receipts WHERE tenant = ? AND message_id = ? AND reader_id = ?"),
    hasReceipt: q("SELECT 1 FROM receipts WHERE tenant = ? AND message_id = ? AND reader_id = ?"),
    receiptsOfReaderFrom: q(
      `SELECT message_id FROM receipts
       WHERE tenant = ? AND conversation_id = ? AND reader_id = ? AND sent_at >= ?`,
    ),
    getHorizon: q(
      "SELECT read_up_to FROM horizons WHERE tenant = ? AND conversation_id = ? AND reader_id = ?",
    ),
    putHorizon: q(
      `INSERT INTO horizons (tenant, conversation_id, reader_id, read_up_to) VALUES (?, ?, ?, ?)
       ON CONFLICT (tenant, conversation_id, reader_id) DO UPDATE SET read_up_to = excluded.read_up_to`,
    ),
    noteHorizonSet: q(
      `INSERT OR IGNORE INTO horizon_sets (tenant, conversation_id, reader_id, read_up_to, set_at)
       VALUES (?, ?, ?, ?, ?)`,
    ),
    horizonSetAt: q(
      `SELECT set_at FROM horizon_sets WHERE tenant = ? AND conversation_id = ? AND reader_id = ?
         AND read_up_to >= ? ORDER BY read_up_to LIMIT 1`,
    ),
    horizonsFrom: q(
      "SELECT reader_id, read_up_to FROM horizons WHERE tenant = ? AND conversation_id = ? AND read_up_to >= ?",
    ),
    latestMembership: q(
      `SELECT joined_at, left_at FROM memberships
       WHERE tenant = ? AND group_id = ? AND user_id = ? ORDER BY joined_at DESC LIMIT 1`,
    ),
    membershipsOfUser: q(
      "SELECT joined_at, left_at FROM memberships WHERE tenant = ? AND group_id = ? AND user_id = ?",
    ),
    openMembership: q(
      // Re-opening an empty interval [t, t) when a user leaves and rejoins within one millisecond.
      `INSERT INTO memberships (tenant, group_id, user_id, joined_at, left_at) VALUES (?, ?, ?, ?, NULL)
       ON CONFLICT (tenant, group_id, user_id, joined_at) DO UPDATE SET left_at = NULL`,
    ),
    closeMembership: q(
      `UPDATE memberships SET left_at = ?
       WHERE tenant = ? AND group_id = ? AND user_id = ? AND left_at IS NULL`,
    ),
    bumpGroup: q(
      `INSERT INTO groups (tenant, group_id, member_count, last_change_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (tenant, group_id) DO UPDATE SET
         member_count = member_count + excluded.member_count,
         last_change_at = max(last_change_at, excluded.last_change_at)`,
    ),
    getGroup: q(
      "SELECT member_count, last_change_at FROM groups WHERE tenant = ? AND group_id = ?",
    ),
    countMembersAt: q(
      `SELECT count(*) AS n FROM memberships
       WHERE tenant = ? AND group_id = ? AND joined_at <= ? AND (left_at IS NULL OR left_at > ?)`,
    ),
    unreadMembers: q(
      `SELECT m.user_id FROM memberships m
       WHERE m.tenant = $tenant AND m.group_id = $group
         AND m.joined_at <= $at AND (m.left_at IS NULL OR m.left_at > $at)
         AND m.user_id > $after AND m.user_id <> $sender
         AND NOT EXISTS (
           SELECT 1 FROM receipts r
           WHERE r.tenant = $tenant AND r.message_id = $message AND r.reader_id = m.user_id)
       ORDER BY m.user_id LIMIT $limit`,
    ),
    currentMembers: q(
      `SELECT user_id, joined_at FROM memberships
       WHERE tenant = ? AND group_id = ? AND left_at IS NULL AND user_id > ?
       ORDER BY user_id LIMIT ?`,
    ),
  };
}

function placeholders(count: number): string {
  return Array.from({ length: count }, () => "?").join(", ");
}

function* chunks<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}
