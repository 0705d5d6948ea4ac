import { type DescMessage, type MessageShape, toJsonString } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import {
  ConversationType,
  type MessageReceipt,
  type WatchReceiptsResponse,
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

/** `m1  read by 2 of 3  (group team, from alice, sent 2026-01-02T10:00:00.000Z)` */
export function describeReceipt(receipt: MessageReceipt): string {
  const c2c = receipt.conversationType === ConversationType.C2C;
  const state = c2c
    ? receipt.receiverRead
      ? `read by ${receipt.receiverId}${receipt.receiverReadAt === undefined ? "" : ` at ${formatTime(receipt.receiverReadAt)}`}`
      : `unread by ${receipt.receiverId}`
    : `read by ${receipt.readCount} of ${receipt.readCount + receipt.unreadCount}`;
  const kind = c2c ? "c2c" : "group";
  return `${receipt.messageId}  ${state}  (${kind} ${receipt.conversationId}, from ${receipt.senderId}, sent ${formatTime(receipt.sentAt)})`;
}

/** One human line per update; undefined for heartbeats. */
export function describeUpdate(response: WatchReceiptsResponse): string | undefined {
  const { update } = response;
  switch (update.case) {
    case "receipt": {
      const receipt = update.value.receipt;
      const now = receipt === undefined ? "" : `; now ${describeReceipt(receipt)}`;
      return `receipt  ${receipt?.messageId ?? "?"} read by ${update.value.readerId} at ${formatTime(update.value.readAt)}${now}`;
    }
    case "readHorizon":
      return `horizon  ${update.value.conversationId} read by ${update.value.readerId} up to ${formatTime(update.value.readUpTo)}`;
    default:
      return undefined;
  }
}
