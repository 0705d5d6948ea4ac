import type { Member, PendingChange, ReadMember, TrackedMessage } from "../domain/model.js";
import { mapConcurrently } from "./map-concurrently.js";
import type {
  FirstPageRequest,
  HorizonStore,
  MembershipHistory,
  MembershipProbe,
  MessageCursor,
  MessageStore,
  NewReceipt,
  OutboxStore,
  PrivacyStore,
  ReceiptLedger,
  ReceiptSettingChange,
  ReceiptStore,
} from "./receipt-store.js";
import type { Cursor, ErasureRecord, UserDataStore } from "./user-data-store.js";

/** What a backend is made of: one module per concern, and the queries that need two. */
export interface StoreParts {
  readonly messages: Omit<MessageStore, "deleteMessages" | "deletedMessages">;
  /** Deleting messages touches messages, receipts and the outbox at once: a part of its own. */
  readonly deletions: Pick<MessageStore, "deleteMessages" | "deletedMessages">;
  readonly ledger: Omit<ReceiptLedger, "listFirstPages">;
  readonly horizons: HorizonStore;
  readonly history: Omit<MembershipHistory, "listUnreadMembers">;
  readonly outbox: OutboxStore;
  /** One user's data, by user: export and erasure. */
  readonly userData: UserDataStore;
  readonly privacy: PrivacyStore;
  /** Members at the message's sent_at minus its readers: the history and the ledger at once. */
  readonly listUnreadMembers: MembershipHistory["listUnreadMembers"];
  /** First pages of listFirstPages read at once. */
  readonly firstPagesInFlight: number;
  readonly ping: () => Promise<void>;
  readonly close: () => Promise<void>;
}

/**
 * The store port answered by a backend's parts: each method goes to the part of its concern,
 * and listFirstPages, the same for every backend, is composed here from the listings.
 * Each backend's store (CassandraReceiptStore, SqliteReceiptStore) builds its parts and
 * extends this.
 */
export class PartsReceiptStore implements ReceiptStore {
  readonly #parts: StoreParts;

  constructor(parts: StoreParts) {
    this.#parts = parts;
  }

  // --- conversations and messages ---

  getConversation(tenant: string, conversationId: string) {
    return this.#parts.messages.getConversation(tenant, conversationId);
  }

  getMessages(tenant: string, messageIds: readonly string[]) {
    return this.#parts.messages.getMessages(tenant, messageIds);
  }

  insertMessages(tenant: string, messages: readonly TrackedMessage[]) {
    return this.#parts.messages.insertMessages(tenant, messages);
  }

  listMessagesSentBetween(
    tenant: string,
    conversationId: string,
    range: { readonly after: number | undefined; readonly upTo: number },
    cursor: MessageCursor | undefined,
    limit: number,
  ) {
    return this.#parts.messages.listMessagesSentBetween(
      tenant,
      conversationId,
      range,
      cursor,
      limit,
    );
  }

  deleteMessages(
    tenant: string,
    conversationId: string,
    messageIds: readonly string[],
    deletedAt: number,
  ) {
    return this.#parts.deletions.deleteMessages(tenant, conversationId, messageIds, deletedAt);
  }

  deletedMessages(tenant: string, messageIds: readonly string[]) {
    return this.#parts.deletions.deletedMessages(tenant, messageIds);
  }

  // --- receipts ---

  insertReceipts(tenant: string, readerId: string, receipts: readonly NewReceipt[]) {
    return this.#parts.ledger.insertReceipts(tenant, readerId, receipts);
  }

  readCounts(tenant: string, messages: readonly TrackedMessage[]) {
    return this.#parts.ledger.readCounts(tenant, messages);
  }

  listReaders(tenant: string, message: TrackedMessage, after: string | undefined, limit: number) {
    return this.#parts.ledger.listReaders(tenant, message, after, limit);
  }

  receiverReadTimes(tenant: string, messages: readonly TrackedMessage[]) {
    return this.#parts.ledger.receiverReadTimes(tenant, messages);
  }

  listFirstPages(
    tenant: string,
    pages: readonly FirstPageRequest[],
    limit: number,
  ): Promise<ReadMember[][]> {
    return mapConcurrently(pages, this.#parts.firstPagesInFlight, async ({ message, filter }) =>
      filter === "read"
        ? this.listReaders(tenant, message, undefined, limit)
        : (await this.listUnreadMembers(tenant, message, undefined, limit)).map((userId) => ({
            userId,
          })),
    );
  }

  hasRead(tenant: string, readerId: string, messageIds: readonly string[]) {
    return this.#parts.ledger.hasRead(tenant, readerId, messageIds);
  }

  settleReceipts(tenant: string, readerId: string, messageIds: readonly string[]) {
    return this.#parts.ledger.settleReceipts(tenant, readerId, messageIds);
  }

  deleteReceiptsFrom(tenant: string, groupId: string, userId: string, fromSentAt: number) {
    return this.#parts.ledger.deleteReceiptsFrom(tenant, groupId, userId, fromSentAt);
  }

  // --- read horizons ---

  getHorizon(tenant: string, conversationId: string, readerId: string) {
    return this.#parts.horizons.getHorizon(tenant, conversationId, readerId);
  }

  advanceHorizon(
    tenant: string,
    conversationId: string,
    readerId: string,
    upTo: number,
    at: number,
  ) {
    return this.#parts.horizons.advanceHorizon(tenant, conversationId, readerId, upTo, at);
  }

  horizonsFrom(tenant: string, conversationId: string, at: number) {
    return this.#parts.horizons.horizonsFrom(tenant, conversationId, at);
  }

  noteHorizonSet(
    tenant: string,
    conversationId: string,
    readerId: string,
    readUpTo: number,
    setAt: number,
    expiresAt?: number,
  ) {
    return this.#parts.horizons.noteHorizonSet(
      tenant,
      conversationId,
      readerId,
      readUpTo,
      setAt,
      expiresAt,
    );
  }

  horizonSetTimes(
    tenant: string,
    conversationId: string,
    readerId: string,
    times: readonly number[],
  ) {
    return this.#parts.horizons.horizonSetTimes(tenant, conversationId, readerId, times);
  }

  // --- membership history ---

  latestMemberships(tenant: string, groupId: string, userIds: readonly string[]) {
    return this.#parts.history.latestMemberships(tenant, groupId, userIds);
  }

  openMemberships(tenant: string, groupId: string, userIds: readonly string[], joinedAt: number) {
    return this.#parts.history.openMemberships(tenant, groupId, userIds, joinedAt);
  }

  closeMemberships(tenant: string, groupId: string, userIds: readonly string[], leftAt: number) {
    return this.#parts.history.closeMemberships(tenant, groupId, userIds, leftAt);
  }

  wasMemberAt(tenant: string, groupId: string, userId: string, times: readonly number[]) {
    return this.#parts.history.wasMemberAt(tenant, groupId, userId, times);
  }

  memberCountAt(tenant: string, groupId: string, at: number) {
    return this.#parts.history.memberCountAt(tenant, groupId, at);
  }

  membershipAt(tenant: string, groupId: string, probes: readonly MembershipProbe[]) {
    return this.#parts.history.membershipAt(tenant, groupId, probes);
  }

  listUnreadMembers(
    tenant: string,
    message: TrackedMessage,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<string[]> {
    return this.#parts.listUnreadMembers(tenant, message, afterUserId, limit);
  }

  listCurrentMembers(
    tenant: string,
    groupId: string,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<Member[]> {
    return this.#parts.history.listCurrentMembers(tenant, groupId, afterUserId, limit);
  }

  // --- outbox ---

  pendingChanges(before: number, limit: number): Promise<PendingChange[]> {
    return this.#parts.outbox.pendingChanges(before, limit);
  }

  clearPendingChanges(changes: readonly PendingChange[]): Promise<void> {
    return this.#parts.outbox.clearPendingChanges(changes);
  }

  // --- one user's data ---

  erasureOf(tenant: string, userId: string) {
    return this.#parts.userData.erasureOf(tenant, userId);
  }

  saveErasure(
    tenant: string,
    userId: string,
    record: ErasureRecord,
    expectedVersion: number | undefined,
  ) {
    return this.#parts.userData.saveErasure(tenant, userId, record, expectedVersion);
  }

  eraseHorizonsOf(tenant: string, userId: string, cursor: Cursor, limit: number) {
    return this.#parts.userData.eraseHorizonsOf(tenant, userId, cursor, limit);
  }

  eraseHorizonSetTimesOf(tenant: string, userId: string, cursor: Cursor, limit: number) {
    return this.#parts.userData.eraseHorizonSetTimesOf(tenant, userId, cursor, limit);
  }

  eraseReceiptsOf(tenant: string, userId: string, cursor: Cursor, limit: number) {
    return this.#parts.userData.eraseReceiptsOf(tenant, userId, cursor, limit);
  }

  eraseMembershipsOf(tenant: string, userId: string, cursor: Cursor, limit: number) {
    return this.#parts.userData.eraseMembershipsOf(tenant, userId, cursor, limit);
  }

  pseudonymiseMessagesOf(tenant: string, userId: string, cursor: Cursor, limit: number) {
    return this.#parts.userData.pseudonymiseMessagesOf(tenant, userId, cursor, limit);
  }

  eraseUserIndexOf(tenant: string, userId: string, cursor: Cursor, limit: number) {
    return this.#parts.userData.eraseUserIndexOf(tenant, userId, cursor, limit);
  }

  exportUserData(tenant: string, userId: string) {
    return this.#parts.userData.exportUserData(tenant, userId);
  }

  // --- receipt settings and private reads ---

  getReceiptSettings(tenant: string, userId: string) {
    return this.#parts.privacy.getReceiptSettings(tenant, userId);
  }

  putReceiptSettings(tenant: string, userId: string, changes: readonly ReceiptSettingChange[]) {
    return this.#parts.privacy.putReceiptSettings(tenant, userId, changes);
  }

  insertPrivateReceipts(tenant: string, readerId: string, receipts: readonly NewReceipt[]) {
    return this.#parts.privacy.insertPrivateReceipts(tenant, readerId, receipts);
  }

  privateReadTimes(tenant: string, readerId: string, messageIds: readonly string[]) {
    return this.#parts.privacy.privateReadTimes(tenant, readerId, messageIds);
  }

  listPrivateReceipts(
    tenant: string,
    readerId: string,
    afterMessageId: string | undefined,
    limit: number,
  ) {
    return this.#parts.privacy.listPrivateReceipts(tenant, readerId, afterMessageId, limit);
  }

  deletePrivateReceiptsOf(tenant: string, messageIds: readonly string[]) {
    return this.#parts.privacy.deletePrivateReceiptsOf(tenant, messageIds);
  }

  eraseUserPrivacy(tenant: string, userId: string) {
    return this.#parts.privacy.eraseUserPrivacy(tenant, userId);
  }

  ping(): Promise<void> {
    return this.#parts.ping();
  }

  close(): Promise<void> {
    return this.#parts.close();
  }
}
