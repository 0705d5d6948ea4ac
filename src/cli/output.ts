import { type DescMessage, type MessageShape, toJson, toJsonString } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import type { WatchEvent } from "../../client/src/node.js";
import {
  ConversationType,
  MessageDeletedUpdateSchema,
  type MessageReceipt,
  ReadHorizonUpdateSchema,
  ReceiptUpdateSchema,
} from "../../gen/receipts/v1/receipts_pb.js";

/** Where results go: stdout for results, stderr for progress and errors. */
export interface Output {
  /** --json: results as protobuf JSON, one document per line. */
  readonly json: boolean;
  out(line: string): void;
  err(line: string): void;
  /** Whether stderr is a terminal (progress may then rewrite its line). */
  readonly errIsTerminal: boolean;
}

/** A response as one line of protobuf JSON, defaults included so scripts need not guess. */
export function jsonLine<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): string {
  return toJsonString(schema, message, { alwaysEmitImplicit: true });
}

export const formatTime = (time: Timestamp | undefined): string =>
  time === undefined ? "-" : timestampDate(time).toISOString();

/** A user id as people read it: the empty id of an erased user (EraseUser) says so. */
const userName = (userId: string): string => (userId === "" ? "(erased user)" : userId);

/** `m1  read by 2 of 3  (group team, from alice, sent 2026-01-02T10:00:00.000Z)` */
export function describeReceipt(receipt: MessageReceipt): string {
  const c2c = receipt.conversationType === ConversationType.C2C;
  const receiver = userName(receipt.receiverId);
  const state = c2c
    ? receipt.receiverRead
      ? `read by ${receiver}${receipt.receiverReadAt === undefined ? "" : ` at ${formatTime(receipt.receiverReadAt)}`}`
      : `unread by ${receiver}`
    : `read by ${receipt.readCount} of ${receipt.readCount + receipt.unreadCount}`;
  const kind = c2c ? "c2c" : "group";
  return `${receipt.messageId}  ${state}  (${kind} ${receipt.conversationId}, from ${userName(receipt.senderId)}, sent ${formatTime(receipt.sentAt)})`;
}

/**
 * One human line per event: updates for stdout, connection events for stderr;
 * none for heartbeats.
 */
export function describeWatchEvent(event: WatchEvent): { line?: string; toStderr: boolean } {
  switch (event.type) {
    case "receipt": {
      const { receipt, readerId, readAt } = event.update;
      const now = receipt === undefined ? "" : `; now ${describeReceipt(receipt)}`;
      return {
        line: `receipt  ${receipt?.messageId ?? "?"} read by ${readerId} at ${formatTime(readAt)}${now}`,
        toStderr: false,
      };
    }
    case "readHorizon": {
      const { conversationId, readerId, readUpTo } = event.update;
      return {
        line: `horizon  ${conversationId} read by ${readerId} up to ${formatTime(readUpTo)}`,
        toStderr: false,
      };
    }
    case "messageDeleted": {
      const { conversationId, messageIds, deletedAt } = event.update;
      return {
        line: `deleted  ${messageIds.join(" ")} of ${conversationId} at ${formatTime(deletedAt)}`,
        toStderr: false,
      };
    }
    case "live":
      return { line: event.resumed ? "live (resumed)" : "live", toStderr: true };
    case "reread":
      return {
        line: `updates before now may be missing (${rereadReasons[event.reason]}): re-read with get`,
        toStderr: true,
      };
    case "reconnecting":
      return {
        line: `reconnecting in ${(event.delayMs / 1000).toFixed(1)} s: ${event.error.codeName}: ${event.error.rawMessage}`,
        toStderr: true,
      };
    case "heartbeat":
      return { toStderr: false };
  }
}

const rereadReasons: Record<Extract<WatchEvent, { type: "reread" }>["reason"], string> = {
  "no-token": "no resume token",
  "token-expired": "the resume token has expired",
  "token-rejected": "the service does not know the resume token",
};

/**
 * One JSON document per event: `{"<type>": {...}, "resumeToken": "..."}`, the
 * updates in protobuf JSON (defaults included) as WatchReceipts sends them.
 */
export function watchEventJson(event: WatchEvent): string {
  const { resumeToken } = event;
  const body = (() => {
    switch (event.type) {
      case "receipt":
        return toJson(ReceiptUpdateSchema, event.update, { alwaysEmitImplicit: true });
      case "readHorizon":
        return toJson(ReadHorizonUpdateSchema, event.update, { alwaysEmitImplicit: true });
      case "messageDeleted":
        return toJson(MessageDeletedUpdateSchema, event.update, { alwaysEmitImplicit: true });
      case "live":
        return { resumed: event.resumed };
      case "reread":
        return { reason: event.reason };
      case "heartbeat":
        return { sentAt: event.sentAt?.toISOString() };
      case "reconnecting":
        return {
          code: event.error.codeName,
          message: event.error.rawMessage,
          attempt: event.attempt,
          delayMs: event.delayMs,
        };
    }
  })();
  return JSON.stringify({ [event.type]: body, resumeToken });
}
