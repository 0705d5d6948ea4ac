import type { MessagesGrant } from "./access-policy.js";
import type { AudienceSizes } from "./audience.js";
import type { Caller } from "./caller.js";
import { invalidArgument, ReceiptError } from "./errors.js";
import type { MessageReceipt, TrackedMessage } from "./model.js";
import type { ReceiptParts } from "./receipt-parts.js";

/** Read counts, and when each C2C message's receiver read it. */
export interface ReadState {
  readonly counts: Map<string, number>;
  readonly readTimes: Map<string, number>;
}

/** GetReceipts; viewerId: answer as that user sees them (its private reads, reciprocity). */
export type GetReceiptsRequest = {
  conversationId: string;
  messageIds: readonly string[];
  viewerId?: string;
};

/** GetReceipts, and the receipts of messages as everyone sees them, for the other parts. */
export class ReceiptReads {
  readonly #parts: ReceiptParts;

  constructor(parts: ReceiptParts) {
    this.#parts = parts;
  }

  async getReceipts(
    tenant: string,
    caller: Caller,
    /** viewerId: answer as that user sees them (its private reads, reciprocity). */
    request: GetReceiptsRequest,
  ): Promise<MessageReceipt[]> {
    const grant = await this.#parts.policy.authorizeGetReceipts(tenant, caller, request);
    const receipts = await this.describe(tenant, trackedMessagesOf(grant));
    return grant.viewerId === undefined
      ? receipts
      : this.#parts.view.asSeenBy(tenant, grant.viewerId, receipts);
  }

  /** The messages' receipts as everyone sees them (shown reads only). */
  async describe(
    tenant: string,
    messages: readonly TrackedMessage[],
    sizes: AudienceSizes = new Map(),
  ): Promise<MessageReceipt[]> {
    const [state, audienceSizes] = await Promise.all([
      this.readState(tenant, messages),
      this.#parts.audience.sizes(tenant, messages, sizes),
    ]);
    return messages.map((m, i) => this.describeOne(m, state, audienceSizes[i] as number));
  }

  describeOne(message: TrackedMessage, state: ReadState, audienceSize: number): MessageReceipt {
    const { messageId } = message;
    return this.#parts.audience.describe(
      message,
      state.counts.get(messageId) ?? 0,
      audienceSize,
      state.readTimes.get(messageId),
    );
  }

  /**
   * Read counts, and when each C2C message's receiver read it. A C2C message's one possible
   * reader is its receiver, so its count comes from that read time, read instead of a count.
   */
  async readState(tenant: string, messages: readonly TrackedMessage[]): Promise<ReadState> {
    const { store } = this.#parts;
    const unique = [...new Map(messages.map((m) => [m.messageId, m])).values()];
    const c2c = unique.filter((m) => m.conversationType === "c2c");
    const groups = unique.filter((m) => m.conversationType === "group");
    const [counts, readTimes] = await Promise.all([
      groups.length === 0 ? new Map<string, number>() : store.readCounts(tenant, groups),
      c2c.length === 0 ? new Map<string, number>() : store.receiverReadTimes(tenant, c2c),
    ]);
    for (const { messageId } of c2c) counts.set(messageId, readTimes.has(messageId) ? 1 : 0);
    return { counts, readTimes };
  }
}

/**
 * The granted messages in request order; every id must be tracked and belong to the
 * conversation (the policy read them; what it let through unchecked is reported here).
 */
export function trackedMessagesOf(grant: MessagesGrant, field = "message_ids"): TrackedMessage[] {
  const { conversationId, found } = grant;
  const indexed = field === "message_ids";
  return grant.messageIds.map((id, i) => {
    const at = indexed ? `${field}[${i}]` : field;
    const message = found.get(id);
    if (message === undefined) {
      throw new ReceiptError("not_found", `message ${id} is not tracked`, at);
    }
    if (message.conversationId !== conversationId) {
      throw invalidArgument(at, `message ${id} does not belong to conversation ${conversationId}`);
    }
    return message;
  });
}
