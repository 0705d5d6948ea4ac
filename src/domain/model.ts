/** Domain types. Times are milliseconds since the Unix epoch (UTC). */

export type ConversationType = "c2c" | "group";

export interface TrackedMessage {
  readonly conversationId: string;
  readonly conversationType: ConversationType;
  readonly messageId: string;
  readonly senderId: string;
  readonly sentAt: number;
  /** C2C only; "" for group messages. */
  readonly receiverId: string;
}

export interface MessageReceipt {
  readonly message: TrackedMessage;
  readonly readCount: number;
  readonly unreadCount: number;
  /** C2C only: whether the receiver has read the message. */
  readonly receiverRead: boolean;
  /**
   * C2C only, when read: the time of the receiver's read (its receipt's read_at).
   * Private reads, once they exist, leave it unset for everyone but the receiver.
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
    }
  | {
      readonly kind: "horizon";
      readonly conversationId: string;
      readonly readerId: string;
      readonly readUpTo: number;
    };

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
