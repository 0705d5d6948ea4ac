import type { AudienceSizes } from "./audience.js";
import type { Caller } from "./caller.js";
import type { ChangeAnnouncer } from "./change-announcer.js";
import { ReceiptError } from "./errors.js";
import {
  type MessageReceipt,
  pendingReceipt,
  type ReceiptChange,
  type TrackedMessage,
} from "./model.js";
import type { PrivateReads, RecordedRead } from "./private-reads.js";
import type { ReceiptParts } from "./receipt-parts.js";
import { type ReceiptReads, trackedMessagesOf } from "./receipt-reads.js";
import { requireId } from "./validate.js";

/** SendReceipts in domain terms. */
export type SendReceiptsRequest = {
  conversationId: string;
  readerId: string;
  messageIds: readonly string[];
};

/** SendReceipts, and the recording of reads that MarkConversationRead and horizons share. */
export class ReceiptRecorder {
  readonly #parts: ReceiptParts;
  readonly #reads: ReceiptReads;
  readonly #privateReads: PrivateReads;
  readonly #announcer: ChangeAnnouncer;

  constructor(
    parts: ReceiptParts,
    reads: ReceiptReads,
    privateReads: PrivateReads,
    announcer: ChangeAnnouncer,
  ) {
    this.#parts = parts;
    this.#reads = reads;
    this.#privateReads = privateReads;
    this.#announcer = announcer;
  }

  async sendReceipts(
    tenant: string,
    caller: Caller,
    request: SendReceiptsRequest,
  ): Promise<MessageReceipt[]> {
    const { policy, audience, clock } = this.#parts;
    const grant = await policy.authorizeSendReceipts(tenant, caller, request);
    const readerId = requireId("reader_id", grant.readerId);
    const messages = trackedMessagesOf(grant);

    const unique = [...new Map(messages.map((m) => [m.messageId, m])).values()];
    // A sender's receipt for its own message is ignored, not an error.
    const acknowledged = unique.filter((m) => m.senderId !== readerId);
    const included = await audience.includes(tenant, readerId, acknowledged);
    const outside = acknowledged.find((_, i) => !included[i]);
    if (outside !== undefined) {
      throw new ReceiptError(
        "permission_denied",
        `reader ${readerId} is not in the audience of message ${outside.messageId}`,
        "reader_id",
      );
    }
    // Asked for while the receipts are written: the answer needs every message's audience.
    const sizes: AudienceSizes = new Map();
    const sized = audience.sizes(tenant, messages, sizes);
    sized.catch(() => undefined); // awaited below; failing first must not count as unhandled
    const readAt = clock();
    const recorded = await this.record(tenant, readerId, acknowledged, sizes, readAt);
    const deleted = recorded.find((r) => r.deleted === true);
    if (deleted !== undefined) throw deletedMeanwhile(deleted.messageId, grant.messageIds);
    const counts = new Map(
      recorded.flatMap((r) => (r.readCount === undefined ? [] : [[r.messageId, r.readCount]])),
    );
    const readTimes = new Map(
      recorded.flatMap((r) => (r.inserted ? [[r.messageId, readAt] as const] : [])),
    );
    // Not counted yet: the reader's own messages. Read before this call: C2C messages that
    // keep the time of that read.
    const unknown = unique.filter(
      (m) =>
        !counts.has(m.messageId) || (m.conversationType === "c2c" && !readTimes.has(m.messageId)),
    );
    if (unknown.length > 0) {
      const state = await this.#reads.readState(tenant, unknown);
      for (const [id, count] of state.counts) if (!counts.has(id)) counts.set(id, count);
      for (const [id, at] of state.readTimes) readTimes.set(id, at);
    }
    const audienceSizes = await sized;
    const known = { counts, readTimes };
    const answer = messages.map((m, i) =>
      this.#reads.describeOne(m, known, audienceSizes[i] as number),
    );
    // Private reads: the reader's own view, its read counted.
    const hidden = recorded.some((r) => r.readCount === undefined);
    return hidden ? this.#parts.view.asSeenBy(tenant, readerId, answer) : answer;
  }

  /**
   * Records reads of one conversation, shown or private as the reader's privacy decides now,
   * and announces the new ones; says of each whether it was new, and (shown) its count.
   */
  async record(
    tenant: string,
    readerId: string,
    messages: readonly TrackedMessage[],
    sizes: AudienceSizes = new Map(),
    readAt = this.#parts.clock(),
  ): Promise<RecordedRead[]> {
    const { store, audience, privacy } = this.#parts;
    const [first] = messages;
    if (first === undefined) return [];
    const conversation = { conversationId: first.conversationId, type: first.conversationType };
    if (await privacy.hides(tenant, readerId, conversation)) {
      return this.#privateReads.record(tenant, readerId, messages, readAt);
    }
    const recorded = await store.insertReceipts(
      tenant,
      readerId,
      messages.map((message) => ({ message, readAt })),
    );
    const fresh = recorded.flatMap((outcome, i) =>
      outcome.inserted ? [{ outcome, message: messages[i] as TrackedMessage }] : [],
    );
    const audienceSizes = await audience.sizes(
      tenant,
      fresh.map((f) => f.message),
      sizes,
    );
    const changes: ReceiptChange[] = fresh.map(({ outcome, message }, i) => ({
      kind: "receipt",
      // A C2C receipt is the receiver's (a sender's own is never recorded).
      receipt: audience.describe(message, outcome.readCount, audienceSizes[i] as number, readAt),
      readerId,
      readAt,
    }));
    this.#announcer.announce(
      tenant,
      changes,
      fresh.map(({ message }) => pendingReceipt(tenant, readerId, message, readAt)),
    );
    return recorded;
  }
}

/** A message deleted while its receipt was being recorded: as if it had never been tracked. */
function deletedMeanwhile(messageId: string, ids: readonly string[]): ReceiptError {
  return new ReceiptError(
    "not_found",
    `message ${messageId} is not tracked (it was deleted)`,
    `message_ids[${ids.indexOf(messageId)}]`,
  );
}
