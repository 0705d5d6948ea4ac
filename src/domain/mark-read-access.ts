import type {
  Conversation,
  MembershipHistory,
  MembershipInterval,
} from "../store/receipt-store.js";
import { ReceiptError } from "./errors.js";

/**
 * MarkConversationRead's own check (the access policy checks the caller): a C2C reader must be
 * one of the pair, a group reader a member now or before; a conversation with neither messages
 * nor members is not there. Given the rows the policy read: the conversation, and the reader's
 * latest membership when it read that (read here otherwise).
 */
export async function checkMayMarkRead(
  store: Pick<MembershipHistory, "latestMemberships">,
  tenant: string,
  read: {
    readonly conversationId: string;
    readonly readerId: string;
    readonly conversation: Conversation | undefined;
    readonly readerHistory: ReadonlyMap<string, MembershipInterval> | undefined;
  },
): Promise<void> {
  const { conversationId, readerId, conversation } = read;
  if (conversation?.type === "c2c") {
    if (!conversation.participants.includes(readerId)) {
      throw new ReceiptError(
        "permission_denied",
        `reader ${readerId} is not a participant of conversation ${conversationId}`,
        "reader_id",
      );
    }
    return;
  }
  const history =
    read.readerHistory ?? (await store.latestMemberships(tenant, conversationId, [readerId]));
  if (history.has(readerId)) return;
  if (conversation === undefined) {
    throw new ReceiptError(
      "not_found",
      `conversation ${conversationId} has no tracked messages and no members`,
      "conversation_id",
    );
  }
  throw new ReceiptError(
    "permission_denied",
    `reader ${readerId} was never a member of group ${conversationId}`,
    "reader_id",
  );
}
