import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  BatchGetReadMembersResponseSchema,
  GetReceiptsResponseSchema,
  ListReadMembersResponseSchema,
  MarkConversationReadResponseSchema,
  MessageDeletedUpdateSchema,
  ReadHorizonUpdateSchema,
  type ReadReceiptService,
  ReceiptUpdateSchema,
  SendReceiptsResponseSchema,
  TrackMessagesResponseSchema,
  type WatchReceiptsResponse,
  WatchReceiptsResponseSchema,
} from "../../gen/receipts/v1/receipts_pb.js";
import type { ReceiptChange } from "../domain/model.js";
import type { ReceiptService } from "../domain/receipt-service.js";
import type { ReceiptWatcher, WatchEvent } from "../domain/receipt-watcher.js";
import {
  conversationTypeToDomain,
  msFromTimestamp,
  readFilterToDomain,
  readMemberToProto,
  receiptToProto,
  timestampFromMsValue,
} from "./convert.js";
import { callerOf, tenantOf } from "./tenant-context.js";

/** ReadReceiptService: proto in, one domain call (it authorizes the caller), proto out. */
export function receiptRoutes(
  receipts: ReceiptService,
  watcher: ReceiptWatcher,
): ServiceImpl<typeof ReadReceiptService> {
  return {
    async trackMessages(request, context) {
      const messages = request.messages.map((m) => ({
        conversationId: m.conversationId,
        conversationType: conversationTypeToDomain(m.conversationType),
        messageId: m.messageId,
        senderId: m.senderId,
        sentAt: msFromTimestamp(m.sentAt),
        receiverId: m.receiverId,
      }));
      const result = await receipts.trackMessages(tenantOf(context), callerOf(context), messages);
      return create(TrackMessagesResponseSchema, result);
    },

    async sendReceipts(request, context) {
      const receiptsAfter = await receipts.sendReceipts(tenantOf(context), callerOf(context), {
        conversationId: request.conversationId,
        readerId: request.readerId,
        messageIds: request.messageIds,
      });
      return create(SendReceiptsResponseSchema, { receipts: receiptsAfter.map(receiptToProto) });
    },

    async getReceipts(request, context) {
      const found = await receipts.getReceipts(tenantOf(context), callerOf(context), {
        conversationId: request.conversationId,
        messageIds: request.messageIds,
        viewerId: request.viewerId,
      });
      return create(GetReceiptsResponseSchema, { receipts: found.map(receiptToProto) });
    },

    async listReadMembers(request, context) {
      const page = await receipts.listReadMembers(
        tenantOf(context),
        callerOf(context),
        {
          conversationId: request.conversationId,
          messageId: request.messageId,
          filter: readFilterToDomain(request.filter),
          pageSize: request.pageSize,
          pageToken: request.pageToken,
        },
        context.signal,
      );
      return create(ListReadMembersResponseSchema, {
        members: page.items.map(readMemberToProto),
        nextPageToken: page.nextPageToken,
        isFinished: page.nextPageToken === "",
      });
    },

    async batchGetReadMembers(request, context) {
      const found = await receipts.batchGetReadMembers(
        tenantOf(context),
        callerOf(context),
        {
          conversationId: request.conversationId,
          messageIds: request.messageIds,
          pageSize: request.pageSize,
        },
        context.signal,
      );
      return create(BatchGetReadMembersResponseSchema, {
        messageReadMembers: found.map(({ receipt, read, unread }) => ({
          receipt: receiptToProto(receipt),
          readMembers: read.items.map(readMemberToProto),
          readNextPageToken: read.nextPageToken,
          unreadMembers: unread.items.map(readMemberToProto),
          unreadNextPageToken: unread.nextPageToken,
        })),
      });
    },

    async markConversationRead(request, context) {
      const result = await receipts.markConversationRead(
        tenantOf(context),
        callerOf(context),
        {
          conversationId: request.conversationId,
          readerId: request.readerId,
          readUpTo: msFromTimestamp(request.readUpTo),
        },
        context.signal,
      );
      return create(MarkConversationReadResponseSchema, {
        readUpTo: timestampFromMsValue(result.readUpTo),
        markedCount: result.markedCount,
      });
    },

    async *watchReceipts(request, context) {
      const events = watcher.watch(
        tenantOf(context),
        callerOf(context),
        {
          conversationIds: request.conversationIds,
          senderId: request.senderId,
          resumeToken: request.resumeToken,
          readerId: request.readerId,
        },
        context.signal,
      );
      for await (const event of events) yield watchEventToProto(event);
    },
  };
}

function watchEventToProto(event: WatchEvent): WatchReceiptsResponse {
  if (event.kind === "heartbeat") {
    return create(WatchReceiptsResponseSchema, {
      update: { case: "heartbeat", value: { sentAt: timestampFromMsValue(event.at) } },
      resumeToken: event.resumeToken,
    });
  }
  return create(WatchReceiptsResponseSchema, {
    update: changeToProto(event.change),
    resumeToken: event.resumeToken,
  });
}

export function changeToProto(change: ReceiptChange): WatchReceiptsResponse["update"] {
  if (change.kind === "receipt") {
    return {
      case: "receipt",
      value: create(ReceiptUpdateSchema, {
        receipt: receiptToProto(change.receipt),
        readerId: change.readerId,
        readAt: timestampFromMsValue(change.readAt),
      }),
    };
  }
  if (change.kind === "deletion") {
    return {
      case: "messageDeleted",
      value: create(MessageDeletedUpdateSchema, {
        conversationId: change.conversationId,
        messageIds: change.messages.map((m) => m.messageId),
        deletedAt: timestampFromMsValue(change.deletedAt),
      }),
    };
  }
  return {
    case: "readHorizon",
    value: create(ReadHorizonUpdateSchema, {
      conversationId: change.conversationId,
      readerId: change.readerId,
      readUpTo: timestampFromMsValue(change.readUpTo),
    }),
  };
}
