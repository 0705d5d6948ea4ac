import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  ConversationType,
  type MessageReceipt,
  MessageReceiptSchema,
  ReadFilter,
  type ReadMember,
  ReadMemberSchema,
} from "../../gen/receipts/v1/receipts_pb.js";
import type {
  ConversationType as DomainConversationType,
  ReadFilter as DomainReadFilter,
  ReadMember as DomainReadMember,
  MessageReceipt as DomainReceipt,
} from "../domain/model.js";

/** Proto ↔ domain conversions; nothing here decides anything. */

export function msFromTimestamp(timestamp: Timestamp | undefined): number | undefined {
  if (timestamp === undefined) return undefined;
  // Millisecond precision: sub-millisecond parts are dropped consistently for every time.
  const ms = timestampMs(timestamp);
  return Number.isFinite(ms) ? Math.floor(ms) : Number.NaN;
}

export const timestampFromMsValue = (ms: number): Timestamp => timestampFromMs(ms);

export function conversationTypeToDomain(
  type: ConversationType,
): DomainConversationType | undefined {
  switch (type) {
    case ConversationType.C2C:
      return "c2c";
    case ConversationType.GROUP:
      return "group";
    default:
      return undefined;
  }
}

export const conversationTypeToProto = (type: DomainConversationType): ConversationType =>
  type === "c2c" ? ConversationType.C2C : ConversationType.GROUP;

export function readFilterToDomain(filter: ReadFilter): DomainReadFilter | undefined {
  switch (filter) {
    case ReadFilter.READ:
      return "read";
    case ReadFilter.UNREAD:
      return "unread";
    default:
      return undefined;
  }
}

export function receiptToProto(receipt: DomainReceipt): MessageReceipt {
  const { message } = receipt;
  return create(MessageReceiptSchema, {
    conversationId: message.conversationId,
    conversationType: conversationTypeToProto(message.conversationType),
    messageId: message.messageId,
    senderId: message.senderId,
    readCount: receipt.readCount,
    unreadCount: receipt.unreadCount,
    receiverId: message.receiverId,
    receiverRead: receipt.receiverRead,
    sentAt: timestampFromMs(message.sentAt),
    receiverReadAt:
      receipt.receiverReadAt === undefined ? undefined : timestampFromMs(receipt.receiverReadAt),
  });
}

export function readMemberToProto(member: DomainReadMember): ReadMember {
  return create(ReadMemberSchema, {
    userId: member.userId,
    readAt: member.readAt === undefined ? undefined : timestampFromMs(member.readAt),
  });
}
