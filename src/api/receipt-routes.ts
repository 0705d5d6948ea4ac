import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  GetReceiptsResponseSchema,
  ListReadMembersResponseSchema,
  MarkConversationReadResponseSchema,
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
  receiptToProto,
  timestampFromMsValue,
} from "./convert.js";
import { tenantKey } from "./tenant-context.js";

const tenantOf = (context: HandlerContext): string => context.values.get(tenantKey);

/** ReadReceiptService: proto in, domain call, proto out. */
export function receiptRoutes(
  receipts: ReceiptService,
  watcher: ReceiptWatcher,
): ServiceImpl<typeof ReadReceiptService> {
  return {
    async trackMessages(request, context) {
      const result = await receipts.trackMessages(
        tenantOf(context),
        request.messages.map((m) => ({
          conversationId: m.conversationId,
          conversationType: conversationTypeToDomain(m.conversationType),
          messageId: m.messageId,
          senderId: m.senderId,
          sentAt: msFromTimestamp(m.sentAt),
          receiverId: m.receiverId,
        })),
      );
      return create(TrackMessagesResponseSchema, result);
    },

    async sendReceipts(request, context) {
      const receiptsAfter = await receipts.sendReceipts(tenantOf(context), request);
      return create(SendReceiptsResponseSchema, { receipts: receiptsAfter.map(receiptToProto) });
    },

    async getReceipts(request, context) {
      const found = await receipts.getReceipts(tenantOf(context), request);
      return create(GetReceiptsResponseSchema, { receipts: found.map(receiptToProto) });
    },

    async listReadMembers(request, context) {
      const page = await receipts.listReadMembers(tenantOf(context), {
        conversationId: request.conversationId,
        messageId: request.messageId,
        filter: readFilterToDomain(request.filter),
        pageSize: request.pageSize,
        pageToken: request.pageToken,
      });
      return create(ListReadMembersResponseSchema, {
        members: page.items.map((m) => ({
          userId: m.userId,
          readAt: m.readAt === undefined ? undefined : timestampFromMsValue(m.readAt),
        })),
        nextPageToken: page.nextPageToken,
        isFinished: page.nextPageToken === "",
      });
    },

    async markConversationRead(request, context) {
      const result = await receipts.markConversationRead(tenantOf(context), {
        conversationId: request.conversationId,
        readerId: request.readerId,
        readUpTo: msFromTimestamp(request.readUpTo),
      });
      return create(MarkConversationReadResponseSchema, {
        readUpTo: timestampFromMsValue(result.readUpTo),
        markedCount: result.markedCount,
      });
    },

    async *watchReceipts(request, context) {
      const events = watcher.watch(
        tenantOf(context),
        {
          conversationIds: request.conversationIds,
          senderId: request.senderId,
          resumeToken: request.resumeToken,
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

function changeToProto(change: ReceiptChange): WatchReceiptsResponse["update"] {
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
  return {
    case: "readHorizon",
    value: create(ReadHorizonUpdateSchema, {
      conversationId: change.conversationId,
      readerId: change.readerId,
      readUpTo: timestampFromMsValue(change.readUpTo),
    }),
  };
}
