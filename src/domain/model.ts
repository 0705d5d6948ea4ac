/** Domain types. Times are milliseconds since the Unix epoch (UTC). */

export type ConversationType = "c2c" | "group";

/**
 * The sender (or C2C receiver) id of a message whose user was erased: empty, which no caller
 * can name (ids are never empty), so it is nobody's message and in nobody's audience.
 */
export const erasedUserId = "";

export interface TrackedMessage {
  readonly conversationId: string;
  readonly conversationType: ConversationType;
  readonly messageId: string;
  readonly senderId: string;
  readonly sentAt: number;
  /** C2C only; "" for group messages. */
  readonly receiverId: string;
  /**
   * When the tenant's retention removes the message with its receipts (ms); undefined when
   * it is kept until deleted. Fixed when the message is tracked; not part of its identity.
   */
  readonly expiresAt?: number;
}

export interface MessageReceipt {
  readonly message: TrackedMessage;
  readonly readCount: number;
  readonly unreadCount: number;
  /** C2C only: whether the receiver has read the message. */
  readonly receiverRead: boolean;
  /**
   * C2C only, when read: the time of the receiver's read (its receipt's read_at). A private
   * read is in the receiver's own view only (ReaderView).
   */
  readonly receiverReadAt?: number;
}

export interface ReadMember {
  readonly userId: string;
  /** Set for READ listings only. */
  readonly readAt?: number;
}

export type ReadFilter = "read" | "unread";

/** One message's receipt with the first page of each side of its audience (BatchGetReadMembers). */
export interface MessageReadMembers {
  readonly receipt: MessageReceipt;
  readonly read: Page<ReadMember>;
  readonly unread: Page<ReadMember>;
}

export interface Page<T> {
  readonly items: readonly T[];
  /** "" when the listing is finished. */
  readonly nextPageToken: string;
}

export interface Member {
  readonly userId: string;
  readonly joinedAt: number;
}

/** One change a watcher may see. */
export type ReceiptChange =
  | {
      readonly kind: "receipt";
      readonly receipt: MessageReceipt;
      readonly readerId: string;
      readonly readAt: number;
      /** A private read: only streams filtered on its reader see it (receipt: the shared view). */
      readonly private?: true;
    }
  | {
      readonly kind: "horizon";
      readonly conversationId: string;
      readonly readerId: string;
      readonly readUpTo: number;
      readonly private?: true;
    }
  | MessagesDeleted;

/** Messages of one conversation deleted (DeleteMessages), with their senders for sender watches. */
export interface MessagesDeleted {
  readonly kind: "deletion";
  readonly conversationId: string;
  readonly messages: readonly { readonly messageId: string; readonly senderId: string }[];
  readonly deletedAt: number;
}

/** A change with its opaque position in the tenant's change log. */
export interface PositionedChange {
  readonly position: string;
  readonly change: ReceiptChange;
}

export function sameTrackedMessage(a: TrackedMessage, b: TrackedMessage): boolean {
  return (
    a.conversationId === b.conversationId &&
    a.conversationType === b.conversationType &&
    a.messageId === b.messageId &&
    a.senderId === b.senderId &&
    a.sentAt === b.sentAt &&
    a.receiverId === b.receiverId
  );
}

/**
 * A change the store keeps (the outbox) from the moment it stores the fact
 * until the change log has it: a receipt's or a horizon's identity, enough
 * to describe it again after a crash or a feed outage.
 */
export type PendingChange =
  | {
      readonly kind: "receipt";
      readonly tenant: string;
      readonly conversationId: string;
      readonly messageId: string;
      readonly readerId: string;
      readonly readAt: number;
    }
  | {
      readonly kind: "horizon";
      readonly tenant: string;
      readonly conversationId: string;
      readonly readerId: string;
      readonly readUpTo: number;
      /** When the horizon moved: the outbox entry's time. */
      readonly at: number;
    }
  | {
      readonly kind: "deletion";
      readonly tenant: string;
      readonly conversationId: string;
      readonly messageId: string;
      readonly senderId: string;
      readonly deletedAt: number;
    };

/** When a pending change's fact happened: a receipt's read time, a horizon's move. */
export const pendingChangeTime = (change: PendingChange): number =>
  change.kind === "receipt"
    ? change.readAt
    : change.kind === "horizon"
      ? change.at
      : change.deletedAt;

/** The pending change of a reader's first receipt for a message. */
export function pendingReceipt(
  tenant: string,
  readerId: string,
  message: TrackedMessage,
  readAt: number,
): PendingChange {
  const { conversationId, messageId } = message;
  return { kind: "receipt", tenant, conversationId, messageId, readerId, readAt };
}

/** The pending change of a message's deletion. */
export function pendingDeletion(
  tenant: string,
  message: Pick<TrackedMessage, "conversationId" | "messageId" | "senderId">,
  deletedAt: number,
): PendingChange {
  const { conversationId, messageId, senderId } = message;
  return { kind: "deletion", tenant, conversationId, messageId, senderId, deletedAt };
}

/**
 * The receipt change with a higher read count than it was published with: its audience (read +
 * unread) stays what it was, so unread goes down by as much.
 */
export function withReadCount(
  change: Extract<ReceiptChange, { kind: "receipt" }>,
  readCount: number,
): ReceiptChange {
  const { receipt } = change;
  if (readCount === receipt.readCount) return change;
  const audience = receipt.readCount + receipt.unreadCount;
  return {
    ...change,
    receipt: {
      ...receipt,
      readCount,
      unreadCount: Math.max(0, audience - readCount),
      receiverRead: receipt.message.conversationType === "c2c" ? readCount > 0 : false,
    },
  };
}

/** Whether a change is a private read or horizon (seen by its reader's own streams only). */
export const isPrivate = (change: ReceiptChange): boolean =>
  change.kind !== "deletion" && change.private === true;

/** Spread into a change whose reads are private. */
export const privateChange = { private: true } as const;

/**
 * A private receipt change as its own reader sees it: published with the count everyone else
 * sees, it adds the reader's own read (the reader had no shown read of it, see PrivateReads).
 */
export function asSeenByItsReader(change: ReceiptChange): ReceiptChange {
  if (change.kind !== "receipt" || change.private !== true) return change;
  return { ...change, receipt: withOwnRead(change.receipt, change.readAt) };
}

/** A receipt with the viewer's own private read (made at `readAt`) counted as read. */
export function withOwnRead(receipt: MessageReceipt, readAt: number): MessageReceipt {
  const c2c = receipt.message.conversationType === "c2c";
  return {
    ...receipt,
    readCount: receipt.readCount + 1,
    unreadCount: Math.max(0, receipt.unreadCount - 1),
    receiverRead: c2c,
    ...(c2c ? { receiverReadAt: readAt } : {}),
  };
}

/** The two users of a C2C conversation, sorted; a group has none. */
export function c2cParticipants(message: TrackedMessage): string[] {
  return message.conversationType === "c2c" ? [message.senderId, message.receiverId].sort() : [];
}

/** Whether one of a user's membership intervals [joinedAt, leftAt) holds time t. */
export function isMemberAt(
  intervals: readonly { readonly joinedAt: number; readonly leftAt: number | undefined }[],
  t: number,
): boolean {
  return intervals.some((i) => i.joinedAt <= t && (i.leftAt === undefined || i.leftAt > t));
}
