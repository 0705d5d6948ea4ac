import type {
  ConversationType,
  Member,
  PendingChange,
  ReadFilter,
  ReadMember,
  TrackedMessage,
} from "../domain/model.js";
import type { PrivacyStore } from "./privacy-store.js";
import type { UserDataStore } from "./user-data-store.js";

export type {
  PrivacyStore,
  PrivateReceipt,
  ReceiptSettingChange,
  ReceiptVisibility,
  StoredReceiptSettings,
} from "./privacy-store.js";

/**
 * The storage port. It speaks domain types only; every backend (embedded
 * SQLite, Cassandra + Redis) implements it and passes the same contract suite
 * (test/store-contract.ts). The rules live in the domain: a store records and
 * answers, and reports facts ("this receipt was new") rather than deciding.
 *
 * Every key starts with the tenant id, so tenants never see each other's data.
 */
export interface ReceiptStore
  extends MessageStore,
    ReceiptLedger,
    HorizonStore,
    MembershipHistory,
    OutboxStore,
    UserDataStore,
    PrivacyStore {
  /** Whether the store answers; used by readiness checks. */
  ping(): Promise<void>;

  close(): Promise<void>;
}

/** Conversations and the messages tracked in them. */
export interface MessageStore {
  getConversation(tenant: string, conversationId: string): Promise<Conversation | undefined>;

  /** Messages by id; ids that are not tracked are absent from the map. */
  getMessages(tenant: string, messageIds: readonly string[]): Promise<Map<string, TrackedMessage>>;

  /**
   * Inserts messages that are not yet tracked (and their conversations, if
   * new). Returns the ids that already existed, or were deleted, and were left
   * untouched: a deleted id is never tracked again. A message with `expiresAt`
   * is removed with everything about it once that time has passed.
   */
  insertMessages(tenant: string, messages: readonly TrackedMessage[]): Promise<Set<string>>;

  /**
   * Deletes messages of the conversation for good: the message, its receipts and their
   * cached counts and pending changes. Keeps a deletion marker, so that the id stays
   * unknown, and a pending "deletion" change per message (see pendingChanges), written no
   * later than the deletion itself. A receipt being recorded at the same moment leaves
   * nothing stored or counted (insertReceipts reports it `deleted`). Ids not tracked in the
   * conversation are skipped; an id already deleted is skipped but its removal is done
   * again, which completes a deletion cut short. Returns the messages deleted by this call.
   */
  deleteMessages(
    tenant: string,
    conversationId: string,
    messageIds: readonly string[],
    deletedAt: number,
  ): Promise<TrackedMessage[]>;

  /** The deletion markers of these ids: the deleted message by id (absent when not deleted). */
  deletedMessages(
    tenant: string,
    messageIds: readonly string[],
  ): Promise<Map<string, TrackedMessage>>;

  /**
   * Messages of a conversation with after < sent_at <= upTo, oldest first,
   * continuing after `cursor` (the last message of the previous batch).
   */
  listMessagesSentBetween(
    tenant: string,
    conversationId: string,
    range: { readonly after: number | undefined; readonly upTo: number },
    cursor: MessageCursor | undefined,
    limit: number,
  ): Promise<TrackedMessage[]>;
}

/** Who has read which message: the receipts, their counts and listings. */
export interface ReceiptLedger {
  /**
   * Records receipts; once it resolves, all of them are stored. For each
   * entry says whether it was the reader's first receipt for that message
   * and the message's read count right after it. A call that fails may have
   * stored some of them (the embedded store: none); calling again stores the
   * rest and counts each receipt once.
   *
   * Every first receipt is also kept as a pending change (see
   * pendingChanges) no later than the receipt itself is stored, so that a
   * receipt acknowledged to a caller always reaches the change log.
   */
  insertReceipts(
    tenant: string,
    readerId: string,
    receipts: readonly NewReceipt[],
  ): Promise<RecordedReceipt[]>;

  /** Exact number of recorded readers per message id (0 for none). */
  readCounts(tenant: string, messages: readonly TrackedMessage[]): Promise<Map<string, number>>;

  /** Readers of a message ordered by user id, after `afterUserId`. */
  listReaders(
    tenant: string,
    message: TrackedMessage,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<ReadMember[]>;

  /**
   * C2C messages: the read_at of each receiver's receipt, by message id; messages their
   * receiver has not read are absent.
   */
  receiverReadTimes(
    tenant: string,
    messages: readonly TrackedMessage[],
  ): Promise<Map<string, number>>;

  /**
   * The first page of several group messages' listings, each as listReaders ("read") or
   * listUnreadMembers ("unread", without read_at) answers from the start, in request order.
   * The backend chooses how many it reads at once.
   */
  listFirstPages(
    tenant: string,
    pages: readonly FirstPageRequest[],
    limit: number,
  ): Promise<ReadMember[][]>;

  /** Whether `readerId` has a receipt for each message id. */
  hasRead(tenant: string, readerId: string, messageIds: readonly string[]): Promise<Set<string>>;

  /**
   * hasRead for receipts whose call may have died part way (pending changes the outbox's
   * sweep takes over): of those stored, what is derived from them (a cached count) is brought
   * up to them, as the call would have done had it lived. Receipts not stored are left alone.
   */
  settleReceipts(
    tenant: string,
    readerId: string,
    messageIds: readonly string[],
  ): Promise<Set<string>>;

  /**
   * Deletes the receipts of `userId` for messages of the group sent at or
   * after `fromSentAt`; used when a removal is backdated so that the user was
   * never in those messages' audience. Returns the ids of the messages whose
   * receipt it deleted.
   */
  deleteReceiptsFrom(
    tenant: string,
    groupId: string,
    userId: string,
    fromSentAt: number,
  ): Promise<string[]>;
}

/** Read horizons: a reader has read everything of a conversation sent up to its horizon. */
export interface HorizonStore {
  /** The reader's horizon in the conversation, if it has one. */
  getHorizon(tenant: string, conversationId: string, readerId: string): Promise<number | undefined>;

  /**
   * Moves a reader's horizon forward to `upTo` (never back). Returns the
   * horizon before and after the call. A horizon that moved is kept as a
   * pending change at `at` (the caller's clock), like a first receipt.
   */
  advanceHorizon(
    tenant: string,
    conversationId: string,
    readerId: string,
    upTo: number,
    at: number,
  ): Promise<{ readonly previous: number | undefined; readonly current: number }>;

  /**
   * Notes when a reader's horizon reached `readUpTo` (the time of the call that moved it),
   * so that messages tracked later under it get that time as their read time. Of two notes
   * of one horizon (concurrent calls moving it to the same time) one is kept.
   */
  noteHorizonSet(
    tenant: string,
    conversationId: string,
    readerId: string,
    readUpTo: number,
    setAt: number,
    /** When the tenant's retention removes the note (the messages it covers are gone by then). */
    expiresAt?: number,
  ): Promise<void>;

  /**
   * For each time t, when the reader's horizon first reached t: the set time of the
   * lowest noted horizon at or after t; undefined when none is noted.
   */
  horizonSetTimes(
    tenant: string,
    conversationId: string,
    readerId: string,
    times: readonly number[],
  ): Promise<(number | undefined)[]>;

  /** Readers whose horizon in the conversation is at or after `at`, with that horizon. */
  horizonsFrom(
    tenant: string,
    conversationId: string,
    at: number,
  ): Promise<{ readonly readerId: string; readonly readUpTo: number }[]>;
}

/** Membership history of groups: who was a member when, and how many. */
export interface MembershipHistory {
  /** The latest membership interval of each user that has one. */
  latestMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
  ): Promise<Map<string, MembershipInterval>>;

  /** Opens an interval at joinedAt for each user (the domain checked they are not members). */
  openMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
    joinedAt: number,
  ): Promise<void>;

  /** Closes each user's open interval at leftAt (the domain checked it is open). */
  closeMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
    leftAt: number,
  ): Promise<void>;

  /** For each time, whether the user was a member then (joined_at <= t < left_at). */
  wasMemberAt(
    tenant: string,
    groupId: string,
    userId: string,
    times: readonly number[],
  ): Promise<boolean[]>;

  /** Number of members at time `at`. */
  memberCountAt(tenant: string, groupId: string, at: number): Promise<number>;

  /**
   * For each probe, the number of members at `probe.at` and whether
   * `probe.userId` was one of them: the audience sizes of a call's messages
   * in one store call per group.
   */
  membershipAt(
    tenant: string,
    groupId: string,
    probes: readonly MembershipProbe[],
  ): Promise<MembershipAt[]>;

  /**
   * Members at `message.sentAt`, minus the sender, minus those who have read
   * it, ordered by user id, after `afterUserId`.
   */
  listUnreadMembers(
    tenant: string,
    message: TrackedMessage,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<string[]>;

  /** Current members ordered by user id, after `afterUserId`. */
  listCurrentMembers(
    tenant: string,
    groupId: string,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<Member[]>;
}

/** The outbox: stored changes the change log may not have yet. */
export interface OutboxStore {
  /**
   * Pending changes kept before `before` (store clock, ms), oldest first as
   * far as the backend orders them, at most `limit`, of every tenant.
   */
  pendingChanges(before: number, limit: number): Promise<PendingChange[]>;

  /** Forgets pending changes once the change log has them (unknown ones are ignored). */
  clearPendingChanges(changes: readonly PendingChange[]): Promise<void>;
}

export interface Conversation {
  readonly conversationId: string;
  readonly type: ConversationType;
  /** C2C only: the two users, sorted. */
  readonly participants: readonly string[];
}

export interface FirstPageRequest {
  /** A group message. */
  readonly message: TrackedMessage;
  readonly filter: ReadFilter;
}

export interface MessageCursor {
  readonly sentAt: number;
  readonly messageId: string;
}

export interface NewReceipt {
  readonly message: TrackedMessage;
  readonly readAt: number;
}

export interface RecordedReceipt {
  readonly messageId: string;
  /** False when the reader had already read the message: nothing changed. */
  readonly inserted: boolean;
  readonly readCount: number;
  /** The message was deleted while the receipt was recorded: nothing is stored for it. */
  readonly deleted?: boolean;
}

export interface MembershipProbe {
  readonly userId: string;
  readonly at: number;
}

export interface MembershipAt {
  readonly memberCount: number;
  readonly wasMember: boolean;
}

export interface MembershipInterval {
  readonly joinedAt: number;
  /** Undefined while the user is still a member. */
  readonly leftAt: number | undefined;
}
