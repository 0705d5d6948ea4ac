import { ReceiptError } from "./errors.js";
import type { ConversationType, TrackedMessage } from "./model.js";

/**
 * The access policy's refusals (access-policy.ts): each with its code and the field at fault,
 * worded so that "not yours" and "not there" read the same to a user.
 */

/** For a caller known to belong: every id must be a message of the conversation. */
export function requireMessagesOf(
  found: ReadonlyMap<string, TrackedMessage>,
  conversationId: string,
  ids: readonly string[],
  field: string,
): void {
  for (const [i, id] of ids.entries()) {
    // A message of another conversation is reported as not tracked here: it is not the user's.
    if (found.get(id)?.conversationId !== conversationId) {
      throw notTracked(id, conversationId, `${field}[${i}]`);
    }
  }
}

export const refused = (message: string, field: string): ReceiptError =>
  new ReceiptError("permission_denied", message, field);

export const notYours = (field: string): ReceiptError =>
  refused("not a conversation of the caller", field);

export const senderOnly = (field: string): ReceiptError =>
  refused("only the sender may list who has read a message", field);

export const notTracked = (id: string, conversationId: string, field: string): ReceiptError =>
  new ReceiptError(
    "not_found",
    `message ${id} is not tracked in conversation ${conversationId}`,
    field,
  );

export const receiptsOff = (type: ConversationType, field: string): ReceiptError =>
  new ReceiptError(
    "failed_precondition",
    `read receipts are turned off for ${type === "c2c" ? "C2C" : "group"} conversations of this tenant`,
    field,
  );
