import type { MembershipAt, MembershipHistory } from "../store/receipt-store.js";
import { erasedUserId, type MessageReceipt, type TrackedMessage } from "./model.js";

/** Audience sizes already asked for within one call, by message id. */
export type AudienceSizes = Map<string, Promise<number>>;

export interface AudienceMeasure {
  /** Group: members at sent_at, the sender included if a member. C2C: the pair. */
  readonly memberCount: number;
  readonly audienceSize: number;
}

const c2cMeasure: Promise<AudienceMeasure> = Promise.resolve({ memberCount: 2, audienceSize: 1 });
/** A C2C message whose receiver was erased: nobody is left to read it. */
const erasedReceiverMeasure: Promise<AudienceMeasure> = Promise.resolve({
  memberCount: 1,
  audienceSize: 0,
});

/**
 * Who a message's audience is: for C2C its receiver; for a group the members
 * at its sent_at, minus the sender. Never a copied member list: answered from
 * the membership history each time.
 */
export class Audience {
  constructor(private readonly store: MembershipHistory) {}

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
    const measured = this.#measure(tenant, unknown);
    unknown.forEach((message, i) => {
      known.set(
        message.messageId,
        (measured[i] as Promise<AudienceMeasure>).then((m) => m.audienceSize),
      );
    });
    return Promise.all(messages.map((m) => known.get(m.messageId) as Promise<number>));
  }

  /** Each message's group size at its sent_at and audience size, asked once per group. */
  measure(tenant: string, messages: readonly TrackedMessage[]): Promise<AudienceMeasure[]> {
    return Promise.all(this.#measure(tenant, messages));
  }

  #measure(tenant: string, messages: readonly TrackedMessage[]): Promise<AudienceMeasure>[] {
    const result: Promise<AudienceMeasure>[] = messages.map((m) =>
      m.receiverId === erasedUserId && m.conversationType === "c2c"
        ? erasedReceiverMeasure
        : c2cMeasure,
    );
    const byGroup = Map.groupBy(
      messages.flatMap((m, i) => (m.conversationType === "group" ? [i] : [])),
      (i) => (messages[i] as TrackedMessage).conversationId,
    );
    for (const [groupId, indexes] of byGroup) {
      const asked = this.store.membershipAt(
        tenant,
        groupId,
        indexes.map((i) => {
          const message = messages[i] as TrackedMessage;
          return { userId: message.senderId, at: message.sentAt };
        }),
      );
      indexes.forEach((messageIndex, k) => {
        result[messageIndex] = asked.then((answers) => {
          const { memberCount, wasMember } = answers[k] as MembershipAt;
          return { memberCount, audienceSize: memberCount - (wasMember ? 1 : 0) };
        });
      });
    }
    return result;
  }

  /**
   * The receipt state of a message given its exact read count and, for C2C,
   * the receiver's read time when known.
   */
  describe(
    message: TrackedMessage,
    readCount: number,
    audienceSize: number,
    receiverReadAt?: number,
  ): MessageReceipt {
    const receiverRead = message.conversationType === "c2c" && readCount > 0;
    return {
      message,
      readCount,
      // A reader stays counted until its receipt is deleted; never report a negative.
      unreadCount: Math.max(audienceSize - readCount, 0),
      receiverRead,
      // A private read is not counted here: only its reader sees it (ReaderView).
      ...(receiverRead && receiverReadAt !== undefined ? { receiverReadAt } : {}),
    };
  }
}
