import { invalidArgument, ReceiptError } from "./errors.js";
import type { ConversationType, TrackedMessage } from "./model.js";
import { requireId, requireTime } from "./validate.js";

/** A message of TrackMessages as the request gives it, before validation. */
export interface TrackedMessageInput {
  readonly conversationId: string;
  readonly conversationType: ConversationType | undefined;
  readonly messageId: string;
  readonly senderId: string;
  readonly sentAt: number | undefined;
  readonly receiverId: string;
}

/**
 * A TrackMessages entry as a message, with the tenant's retention applied: a message already
 * past it is refused (FAILED_PRECONDITION on its sent_at) rather than tracked and dropped at
 * once, so that a caller whose clock or import is off hears of it.
 */
export function trackedMessageOf(
  input: TrackedMessageInput,
  at: string,
  retention: { readonly retentionMs: number | undefined; readonly now: number },
): TrackedMessage {
  const message = validateTrackedMessage(input, at);
  if (retention.retentionMs === undefined) return message;
  const expiresAt = message.sentAt + retention.retentionMs;
  if (expiresAt <= retention.now) {
    throw new ReceiptError(
      "failed_precondition",
      `message ${message.messageId} was sent before the tenant's retention period (${new Date(retention.now - retention.retentionMs).toISOString()})`,
      `${at}.sent_at`,
    );
  }
  return { ...message, expiresAt };
}

function validateTrackedMessage(input: TrackedMessageInput, at: string): TrackedMessage {
  const conversationId = requireId(`${at}.conversation_id`, input.conversationId);
  const messageId = requireId(`${at}.message_id`, input.messageId);
  const senderId = requireId(`${at}.sender_id`, input.senderId);
  if (input.conversationType === undefined) {
    throw invalidArgument(
      `${at}.conversation_type`,
      "must be CONVERSATION_TYPE_C2C or CONVERSATION_TYPE_GROUP",
    );
  }
  if (input.sentAt === undefined) throw invalidArgument(`${at}.sent_at`, "must be set");
  const sentAt = requireTime(`${at}.sent_at`, input.sentAt, 0);
  let receiverId = "";
  if (input.conversationType === "c2c") {
    receiverId = requireId(`${at}.receiver_id`, input.receiverId);
    if (receiverId === senderId) {
      throw invalidArgument(`${at}.receiver_id`, "must differ from sender_id");
    }
  } else if (input.receiverId !== "") {
    throw invalidArgument(`${at}.receiver_id`, "must be empty for group messages");
  }
  return {
    conversationId,
    conversationType: input.conversationType,
    messageId,
    senderId,
    sentAt,
    receiverId,
  };
}

export function alreadyTracked(
  all: readonly TrackedMessage[],
  message: TrackedMessage,
): ReceiptError {
  const index = all.findIndex((m) => m.messageId === message.messageId);
  return new ReceiptError(
    "already_exists",
    `message ${message.messageId} is already tracked with different data`,
    `messages[${index}]`,
  );
}
