import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
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
import type { AccessPolicy, Caller } from "../domain/access-policy.js";
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
import { callerKey, tenantKey } from "./tenant-context.js";

const tenantOf = (context: HandlerContext): string => context.values.get(tenantKey);
const callerOf = (context: HandlerContext): Caller => context.values.get(callerKey);

/** ReadReceiptService: proto in, domain call, proto out. */
export function receiptRoutes(
  receipts: ReceiptService,
  watcher: ReceiptWatcher,
  policy: AccessPolicy,
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
      await policy.authorizeTrackMessages(tenantOf(context), callerOf(context), messages);
      const result = await receipts.trackMessages(tenantOf(context), messages);
      return create(TrackMessagesResponseSchema, result);
    },

    async sendReceipts(request, context) {
      const readerId = await policy.authorizeSendReceipts(
        tenantOf(context),
        callerOf(context),
        request,
      );
      const receiptsAfter = await receipts.sendReceipts(tenantOf(context), {
        conversationId: request.conversationId,
        readerId,
        messageIds: request.messageIds,
      });
      return create(SendReceiptsResponseSchema, { receipts: receiptsAfter.map(receiptToProto) });
    },

    async getReceipts(request, context) {
      await policy.authorizeGetReceipts(tenantOf(context), callerOf(context), request);
      const found = await receipts.getReceipts(tenantOf(context), {
        conversationId: request.conversationId,
        messageIds: request.messageIds,
        viewerId: policy.viewerOf(callerOf(context), request.viewerId),
      });
      return create(GetReceiptsResponseSchema, { receipts: found.map(receiptToProto) });
    },

    async listReadMembers(request, context) {
      await policy.authorizeListReadMembers(tenantOf(context), callerOf(context), request);
      const page = await receipts.listReadMembers(
        tenantOf(context),
        {
          conversationId: request.conversationId,
          messageId: request.messageId,
          filter: readFilterToDomain(request.filter),
          pageSize: request.pageSize,
          pageToken: request.pageToken,
          viewerId: policy.viewerOf(callerOf(context), ""),
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
      const { maxGroupSize } = await policy.authorizeBatchGetReadMembers(
        tenantOf(context),
        callerOf(context),
        request,
      );
      const found = await receipts.batchGetReadMembers(
        tenantOf(context),
        {
          conversationId: request.conversationId,
          messageIds: request.messageIds,
          pageSize: request.pageSize,
          maxGroupSize,
          viewerId: policy.viewerOf(callerOf(context), ""),
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
      const readerId = await policy.authorizeMarkConversationRead(
        tenantOf(context),
        callerOf(context),
        request,
      );
      const result = await receipts.markConversationRead(
        tenantOf(context),
        {
          conversationId: request.conversationId,
          readerId,
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
      // Ends when the call does or the caller's access to what it watches ends.
      const signal = await policy.authorizeWatchReceipts(
        tenantOf(context),
        callerOf(context),
        request,
        context.signal,
      );
      const events = watcher.watch(
        tenantOf(context),
        {
          conversationIds: request.conversationIds,
          senderId: request.senderId,
          resumeToken: request.resumeToken,
          readerId: request.readerId,
          // A user's stream is its own view; a service caller's the shared one.
          viewerId: policy.viewerOf(callerOf(context), ""),
        },
        signal,
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
