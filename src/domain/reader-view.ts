import type { PrivacyStore, ReceiptLedger } from "../store/receipt-store.js";
import {
  type MessageReceipt,
  type ReadFilter,
  type ReadMember,
  type ReceiptChange,
  type TrackedMessage,
  withOwnRead,
} from "./model.js";
import type { ReceiptPrivacy } from "./receipt-privacy.js";

/**
 * Receipts as one user sees them. Everyone sees the shown reads; the viewer also sees its own
 * private reads (counted as read), and in C2C, when the tenant makes privacy reciprocal, a
 * viewer whose reads are private there does not see the other's read of what it sent.
 * read_count + unread_count stays the audience in every view.
 */
export class ReaderView {
  readonly #store: Pick<PrivacyStore, "privateReadTimes"> & Pick<ReceiptLedger, "hasRead">;
  readonly #privacy: ReceiptPrivacy;

  constructor(
    store: Pick<PrivacyStore, "privateReadTimes"> & Pick<ReceiptLedger, "hasRead">,
    privacy: ReceiptPrivacy,
  ) {
    this.#store = store;
    this.#privacy = privacy;
  }

  async asSeenBy(
    tenant: string,
    viewerId: string,
    receipts: readonly MessageReceipt[],
  ): Promise<MessageReceipt[]> {
    const ids = receipts.flatMap((r) =>
      r.message.senderId === viewerId ? [] : [r.message.messageId],
    );
    const privateTimes =
      ids.length === 0
        ? new Map<string, number>()
        : await this.#store.privateReadTimes(tenant, viewerId, ids);
    // A private read later made again while shown is counted once, among the shown.
    const shown =
      privateTimes.size === 0
        ? new Set<string>()
        : await this.#store.hasRead(tenant, viewerId, [...privateTimes.keys()]);
    const seen = await this.reciprocal(tenant, viewerId, receipts);
    return seen.map((receipt) => {
      const { messageId } = receipt.message;
      const readAt = privateTimes.get(messageId);
      return readAt === undefined || shown.has(messageId) ? receipt : withOwnRead(receipt, readAt);
    });
  }

  /**
   * Receipts with the reciprocal rule only (for listings, which stay the shared view otherwise):
   * a viewer hiding its C2C reads sees what it sent there unread.
   */
  async reciprocal(
    tenant: string,
    viewerId: string | undefined,
    receipts: readonly MessageReceipt[],
  ): Promise<MessageReceipt[]> {
    if (viewerId === undefined) return [...receipts];
    const withheld = await this.#reciprocallyWithheld(
      tenant,
      viewerId,
      receipts.map((r) => r.message),
    );
    return receipts.map((r) =>
      r.message.senderId === viewerId && withheld.has(r.message.conversationId) ? unread(r) : r,
    );
  }

  /** A ListReadMembers page as the viewer sees it: a withheld C2C receiver is listed unread. */
  async membersSeenBy(
    tenant: string,
    viewerId: string | undefined,
    page: { message: TrackedMessage; filter: ReadFilter; after: string | undefined },
    rows: ReadMember[],
  ): Promise<ReadMember[]> {
    const { message, filter, after } = page;
    if (viewerId === undefined || message.senderId !== viewerId) return rows;
    const withheld = await this.#reciprocallyWithheld(tenant, viewerId, [message]);
    if (withheld.size === 0) return rows;
    if (filter === "read" || (after !== undefined && message.receiverId <= after)) return [];
    return [{ userId: message.receiverId }];
  }

  /**
   * A change on the viewer's stream: withheld (undefined) when it is the other's read of a C2C
   * message the viewer sent and the viewer's reads there are private under reciprocity.
   */
  async changeSeenBy(
    tenant: string,
    viewerId: string,
    change: ReceiptChange,
  ): Promise<ReceiptChange | undefined> {
    if (change.kind !== "receipt") return change;
    const withheld = await this.#reciprocallyWithheld(tenant, viewerId, [change.receipt.message]);
    return withheld.size === 0 ? change : undefined;
  }

  /** C2C conversations where the viewer sent messages and, hiding its reads, sees none of the other's. */
  async #reciprocallyWithheld(
    tenant: string,
    viewerId: string,
    messages: readonly TrackedMessage[],
  ): Promise<Set<string>> {
    const withheld = new Set<string>();
    if (!this.#privacy.tenantPrivacy(tenant).reciprocalC2c) return withheld;
    const sentByViewer = messages.filter(
      (m) => m.conversationType === "c2c" && m.senderId === viewerId,
    );
    for (const conversationId of new Set(sentByViewer.map((m) => m.conversationId))) {
      if (await this.#privacy.hides(tenant, viewerId, { conversationId, type: "c2c" })) {
        withheld.add(conversationId);
      }
    }
    return withheld;
  }
}

/** A C2C receipt with the receiver's read withheld: its one reader counted unread. */
function unread(receipt: MessageReceipt): MessageReceipt {
  const { receiverReadAt: _, ...rest } = receipt;
  return {
    ...rest,
    readCount: 0,
    unreadCount: receipt.readCount + receipt.unreadCount,
    receiverRead: false,
  };
}
