import type { ReceiptStore } from "../store/receipt-store.js";
import type { MessageReceipt, TrackedMessage } from "./model.js";

/** Audience sizes already asked for within one call, by message id. */
export type AudienceSizes = Map<string, Promise<number>>;

/**
 * Who a message's audience is: for C2C its receiver; for a group the members
 * at its sent_at, minus the sender. Never a copied member list: answered from
 * the membership history each time.
 */
export class Audience {
  constructor(private readonly store: ReceiptStore) {}

  /** For each message, whether `userId` is in its audience. */
  async includes(
    tenant: string,
    userId: string,
    messages: readonly TrackedMessage[],
  ): Promise<boolean[]> {
    const result = messages.map((m) =>
      m.conversationType === "c2c" ? m.receiverId === userId : undefined,
    );
    const groupIndexes = messages.flatMap((m, i) =>
      m.conversationType === "group" && m.senderId !== userId ? [i] : [],
    );
    // Messages of one call share one conversation in practice; ask once per group.
    const byGroup = Map.groupBy(
      groupIndexes,
      (i) => (messages[i] as TrackedMessage).conversationId,
    );
    for (const [groupId, indexes] of byGroup) {
      const times = indexes.map((i) => (messages[i] as TrackedMessage).sentAt);
      const member = await this.store.wasMemberAt(tenant, groupId, userId, times);
      indexes.forEach((messageIndex, k) => {
        result[messageIndex] = member[k] as boolean;
      });
    }
    return result.map((included) => included ?? false);
  }

  /**
   * The audience size of a message. `known` holds the sizes one call already asked for, so
   * that answering a call that also recorded receipts reads the membership once per message.
   */
  size(tenant: string, message: TrackedMessage, known?: AudienceSizes): Promise<number> {
    const cached = known?.get(message.messageId);
    if (cached !== undefined) return cached;
    const size = this.#size(tenant, message);
    known?.set(message.messageId, size);
    return size;
  }

  async #size(tenant: string, message: TrackedMessage): Promise<number> {
    if (message.conversationType === "c2c") return 1;
    const [members, [senderWasMember]] = await Promise.all([
      this.store.memberCountAt(tenant, message.conversationId, message.sentAt),
      this.store.wasMemberAt(tenant, message.conversationId, message.senderId, [message.sentAt]),
    ]);
    return members - (senderWasMember ? 1 : 0);
  }

  /** The receipt state of a message given its exact read count. */
  async describe(
    tenant: string,
    message: TrackedMessage,
    readCount: number,
    known?: AudienceSizes,
  ): Promise<MessageReceipt> {
    const size = await this.size(tenant, message, known);
    return {
      message,
      readCount,
      // A reader stays counted until its receipt is deleted; never report a negative.
      unreadCount: Math.max(size - readCount, 0),
      receiverRead: message.conversationType === "c2c" && readCount > 0,
    };
  }
}
