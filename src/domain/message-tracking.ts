import type { Caller } from "./caller.js";
import type { ConversationHorizons } from "./conversation-horizons.js";
import { invalidArgument, ReceiptError } from "./errors.js";
import { limits } from "./limits.js";
import { type ConversationType, sameTrackedMessage, type TrackedMessage } from "./model.js";
import type { ReceiptParts } from "./receipt-parts.js";
import {
  alreadyTracked,
  type TrackedMessageInput,
  trackedMessageOf,
} from "./tracked-message-input.js";

/**
 * TrackMessages: messages become known with their audience's conversation; tracking the same
 * message again with the same data changes nothing, with other data is refused.
 */
export class MessageTracking {
  readonly #parts: ReceiptParts;
  readonly #horizons: ConversationHorizons;

  constructor(parts: ReceiptParts, horizons: ConversationHorizons) {
    this.#parts = parts;
    this.#horizons = horizons;
  }

  async trackMessages(
    tenant: string,
    caller: Caller,
    inputs: readonly TrackedMessageInput[],
  ): Promise<{ trackedCount: number }> {
    const { store, policy } = this.#parts;
    await policy.authorizeTrackMessages(tenant, caller, inputs);
    if (inputs.length === 0) throw invalidArgument("messages", "must not be empty");
    if (inputs.length > limits.maxMessagesPerTrackCall) {
      throw invalidArgument(
        "messages",
        `must hold at most ${limits.maxMessagesPerTrackCall} messages, got ${inputs.length}`,
      );
    }
    const retention = { retentionMs: this.#parts.retentionOf(tenant), now: this.#parts.clock() };
    const messages = inputs.map((input, i) => trackedMessageOf(input, `messages[${i}]`, retention));

    const firstIndex = new Map<string, number>();
    messages.forEach((message, i) => {
      const earlier = firstIndex.get(message.messageId);
      if (earlier === undefined) firstIndex.set(message.messageId, i);
      else if (!sameTrackedMessage(messages[earlier] as TrackedMessage, message)) {
        throw invalidArgument(
          `messages[${i}].message_id`,
          `message ${message.messageId} appears twice with different data`,
        );
      }
    });
    const unique = [...firstIndex.values()].map((i) => messages[i] as TrackedMessage);

    await this.#checkConversations(tenant, messages);
    const existing = await store.getMessages(
      tenant,
      unique.map((m) => m.messageId),
    );
    const fresh = unique.filter((message) => {
      const stored = existing.get(message.messageId);
      if (stored === undefined) return true;
      if (!sameTrackedMessage(stored, message)) throw alreadyTracked(messages, message);
      return false;
    });
    if (fresh.length === 0) return { trackedCount: 0 };

    const raced = await store.insertMessages(tenant, fresh);
    if (raced.size > 0) {
      // Another call tracked some of these between our read and write: same data is fine.
      const winners = await store.getMessages(tenant, [...raced]);
      for (const message of fresh) {
        const winner = winners.get(message.messageId);
        if (winner !== undefined && !sameTrackedMessage(winner, message)) {
          throw alreadyTracked(messages, message);
        }
      }
    }
    const inserted = fresh.filter((m) => !raced.has(m.messageId));
    await this.#horizons.applyExisting(tenant, inserted);
    return { trackedCount: inserted.length };
  }

  /** A message's conversation type and C2C pair must agree with what is already stored. */
  async #checkConversations(tenant: string, messages: readonly TrackedMessage[]): Promise<void> {
    const seen = new Map<string, { type: ConversationType; participants: string }>();
    for (const [i, message] of messages.entries()) {
      const participants =
        message.conversationType === "c2c"
          ? [message.senderId, message.receiverId].sort().join("\u0000")
          : "";
      let known = seen.get(message.conversationId);
      if (known === undefined) {
        const stored = await this.#parts.store.getConversation(tenant, message.conversationId);
        known =
          stored === undefined
            ? { type: message.conversationType, participants }
            : { type: stored.type, participants: stored.participants.join("\u0000") };
        seen.set(message.conversationId, known);
      }
      if (known.type !== message.conversationType) {
        throw new ReceiptError(
          "failed_precondition",
          `conversation ${message.conversationId} is a ${known.type === "c2c" ? "C2C" : "group"} conversation`,
          `messages[${i}].conversation_type`,
        );
      }
      if (known.participants !== participants) {
        throw new ReceiptError(
          "failed_precondition",
          `C2C conversation ${message.conversationId} is between other users`,
          `messages[${i}].receiver_id`,
        );
      }
    }
  }
}
