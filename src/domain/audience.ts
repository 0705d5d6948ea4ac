import type { MembershipAt, ReceiptStore } from "../store/receipt-store.js";
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
   * The audience sizes of messages, asked of the store once per group.
   * `known` holds the sizes one call already asked for, so that answering a
   * call that also recorded receipts reads the membership once per message.
   */
  sizes(
    tenant: string,
    messages: readonly TrackedMessage[],
    known: AudienceSizes = new Map(),
  ): Promise<number[]> {
    const unknown = [
      ...new Map(
        messages.filter((m) => !known.has(m.messageId)).map((m) => [m.messageId, m]),
      ).values(),
    ];
    for (const [groupId, group] of Map.groupBy(unknown, (m) =>
      m.conversationType === "c2c" ? undefined : m.conversationId,
    )) {
      if (groupId === undefined) {
        for (const message of group) known.set(message.messageId, Promise.resolve(1));
        continue;
      }
      const asked = this.store.membershipAt(
        tenant,
        groupId,
        group.map((m) => ({ userId: m.senderId, at: m.sentAt })),
      );
      group.forEach((message, i) => {
        known.set(
          message.messageId,
          asked.then((answers) => {
            const { memberCount, wasMember } = answers[i] as MembershipAt;
            return memberCount - (wasMember ? 1 : 0);
          }),
        );
      });
    }
    return Promise.all(messages.map((m) => known.get(m.messageId) as Promise<number>));
  }

  /** The receipt state of a message given its exact read count. */
  describe(message: TrackedMessage, readCount: number, audienceSize: number): MessageReceipt {
    return {
      message,
      readCount,
      // A reader stays counted until its receipt is deleted; never report a negative.
      unreadCount: Math.max(audienceSize - readCount, 0),
      receiverRead: message.conversationType === "c2c" && readCount > 0,
    };
  }
}
