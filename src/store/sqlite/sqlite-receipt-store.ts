import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { Member, PendingChange, ReadMember, TrackedMessage } from "../../domain/model.js";
import { firstPagesOf } from "../derived-reads.js";
import type {
  FirstPageRequest,
  MembershipProbe,
  MessageCursor,
  NewReceipt,
  ReceiptStore,
} from "../receipt-store.js";
import { SqliteHorizons } from "./sqlite-horizons.js";
import { SqliteMembershipHistory } from "./sqlite-membership-history.js";
import { SqliteMessages } from "./sqlite-messages.js";
import { SqliteOutbox } from "./sqlite-outbox.js";
import { SqliteReceiptLedger } from "./sqlite-receipt-ledger.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

/**
 * The embedded store: one SQLite file through `node:sqlite`. Calls are
 * synchronous underneath, so each method is atomic with respect to the others
 * in this process; multi-row writes run in one transaction, through the
 * connection's one write batcher (group commit), which the change feed on the
 * same connection shares.
 *
 * One module per concern, as in the Cassandra store: messages, the receipt
 * ledger, horizons, membership history and the outbox. This class delegates
 * to them and answers the one query that joins two of them: unread members.
 */
export class SqliteReceiptStore implements ReceiptStore {
  readonly #db: DatabaseSync;
  readonly #messages: SqliteMessages;
  readonly #ledger: SqliteReceiptLedger;
  readonly #horizons: SqliteHorizons;
  readonly #history: SqliteMembershipHistory;
  readonly #outbox: SqliteOutbox;
  readonly #unreadMembers: StatementSync;

  constructor(db: DatabaseSync, writes: SqliteWriteBatcher) {
    this.#db = db;
    this.#outbox = new SqliteOutbox(db, writes);
    this.#messages = new SqliteMessages(db, writes);
    this.#ledger = new SqliteReceiptLedger(db, writes, this.#outbox);
    this.#horizons = new SqliteHorizons(db, writes, this.#outbox);
    this.#history = new SqliteMembershipHistory(db, writes);
    this.#unreadMembers = db.prepare(
      `SELECT m.user_id FROM memberships m
       WHERE m.tenant = $tenant AND m.group_id = $group
         AND m.joined_at <= $at AND (m.left_at IS NULL OR m.left_at > $at)
         AND m.user_id > $after AND m.user_id <> $sender
         AND NOT EXISTS (
           SELECT 1 FROM receipts r
           WHERE r.tenant = $tenant AND r.message_id = $message AND r.reader_id = m.user_id)
       ORDER BY m.user_id LIMIT $limit`,
    );
  }

  // --- conversations and messages ---

  getConversation(tenant: string, conversationId: string) {
    return this.#messages.getConversation(tenant, conversationId);
  }

  getMessages(tenant: string, messageIds: readonly string[]) {
    return this.#messages.getMessages(tenant, messageIds);
  }

  insertMessages(tenant: string, messages: readonly TrackedMessage[]) {
    return this.#messages.insertMessages(tenant, messages);
  }

  listMessagesSentBetween(
    tenant: string,
    conversationId: string,
    range: { readonly after: number | undefined; readonly upTo: number },
    cursor: MessageCursor | undefined,
    limit: number,
  ) {
    return this.#messages.listMessagesSentBetween(tenant, conversationId, range, cursor, limit);
  }

  // --- receipts ---

  insertReceipts(tenant: string, readerId: string, receipts: readonly NewReceipt[]) {
    return this.#ledger.insertReceipts(tenant, readerId, receipts);
  }

  readCounts(tenant: string, messages: readonly TrackedMessage[]) {
    return this.#ledger.readCounts(tenant, messages);
  }

  listReaders(tenant: string, message: TrackedMessage, after: string | undefined, limit: number) {
    return this.#ledger.listReaders(tenant, message, after, limit);
  }

  receiverReadTimes(tenant: string, messages: readonly TrackedMessage[]) {
    return this.#ledger.receiverReadTimes(tenant, messages);
  }

  listFirstPages(
    tenant: string,
    pages: readonly FirstPageRequest[],
    limit: number,
  ): Promise<ReadMember[][]> {
    return firstPagesOf(this, tenant, pages, limit, 1);
  }

  hasRead(tenant: string, readerId: string, messageIds: readonly string[]) {
    return this.#ledger.hasRead(tenant, readerId, messageIds);
  }

  deleteReceiptsFrom(tenant: string, groupId: string, userId: string, fromSentAt: number) {
    return this.#ledger.deleteReceiptsFrom(tenant, groupId, userId, fromSentAt);
  }

  // --- read horizons ---

  getHorizon(tenant: string, conversationId: string, readerId: string) {
    return this.#horizons.getHorizon(tenant, conversationId, readerId);
  }

  advanceHorizon(
    tenant: string,
    conversationId: string,
    readerId: string,
    upTo: number,
    at: number,
  ) {
    return this.#horizons.advanceHorizon(tenant, conversationId, readerId, upTo, at);
  }

  horizonsFrom(tenant: string, conversationId: string, at: number) {
    return this.#horizons.horizonsFrom(tenant, conversationId, at);
  }

  noteHorizonSet(
    tenant: string,
    conversationId: string,
    readerId: string,
    readUpTo: number,
    setAt: number,
  ) {
    return this.#horizons.noteHorizonSet(tenant, conversationId, readerId, readUpTo, setAt);
  }

  horizonSetTimes(
    tenant: string,
    conversationId: string,
    readerId: string,
    times: readonly number[],
  ) {
    return this.#horizons.horizonSetTimes(tenant, conversationId, readerId, times);
  }

  // --- membership history ---

  latestMemberships(tenant: string, groupId: string, userIds: readonly string[]) {
    return this.#history.latestMemberships(tenant, groupId, userIds);
  }

  openMemberships(tenant: string, groupId: string, userIds: readonly string[], joinedAt: number) {
    return this.#history.openMemberships(tenant, groupId, userIds, joinedAt);
  }

  closeMemberships(tenant: string, groupId: string, userIds: readonly string[], leftAt: number) {
    return this.#history.closeMemberships(tenant, groupId, userIds, leftAt);
  }

  wasMemberAt(tenant: string, groupId: string, userId: string, times: readonly number[]) {
    return this.#history.wasMemberAt(tenant, groupId, userId, times);
  }

  memberCountAt(tenant: string, groupId: string, at: number) {
    return this.#history.memberCountAt(tenant, groupId, at);
  }

  membershipAt(tenant: string, groupId: string, probes: readonly MembershipProbe[]) {
    return this.#history.membershipAt(tenant, groupId, probes);
  }

  async listUnreadMembers(
    tenant: string,
    message: TrackedMessage,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<string[]> {
    const rows = this.#unreadMembers.all({
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

  listCurrentMembers(
    tenant: string,
    groupId: string,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<Member[]> {
    return this.#history.listCurrentMembers(tenant, groupId, afterUserId, limit);
  }

  // --- outbox ---

  pendingChanges(before: number, limit: number): Promise<PendingChange[]> {
    return this.#outbox.pendingChanges(before, limit);
  }

  clearPendingChanges(changes: readonly PendingChange[]): Promise<void> {
    return this.#outbox.clearPendingChanges(changes);
  }

  async ping(): Promise<void> {
    this.#db.prepare("SELECT 1").get();
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }
}
