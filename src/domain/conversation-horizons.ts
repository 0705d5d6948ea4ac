import type { Caller } from "./caller.js";
import type { ChangeAnnouncer } from "./change-announcer.js";
import { invalidArgument } from "./errors.js";
import { limits } from "./limits.js";
import { checkMayMarkRead } from "./mark-read-access.js";
import { privateChange, type TrackedMessage } from "./model.js";
import type { ReceiptParts } from "./receipt-parts.js";
import type { ReceiptRecorder } from "./receipt-recorder.js";
import { requireId, requireTime } from "./validate.js";

/** How many messages MarkConversationRead materialises per store round trip. */
const markBatchSize = 500;

/** MarkConversationRead; readUpTo undefined means now. */
export type MarkConversationReadRequest = {
  conversationId: string;
  readerId: string;
  readUpTo: number | undefined;
};

/**
 * Read horizons: MarkConversationRead, and the messages tracked later under a horizon already
 * set, which count as read by its reader.
 */
export class ConversationHorizons {
  readonly #parts: ReceiptParts;
  readonly #recorder: ReceiptRecorder;
  readonly #announcer: ChangeAnnouncer;

  constructor(parts: ReceiptParts, recorder: ReceiptRecorder, announcer: ChangeAnnouncer) {
    this.#parts = parts;
    this.#recorder = recorder;
    this.#announcer = announcer;
  }

  async markConversationRead(
    tenant: string,
    caller: Caller,
    request: MarkConversationReadRequest,
    /** Aborted when the caller gives up: the batch loop stops before its next store call. */
    signal?: AbortSignal,
  ): Promise<{ readUpTo: number; markedCount: number }> {
    const { store, policy, audience } = this.#parts;
    const grant = await policy.authorizeMarkConversationRead(tenant, caller, request);
    const { conversationId } = grant;
    const readerId = requireId("reader_id", grant.readerId);
    const now = this.#parts.clock();
    const upTo = requireTime("read_up_to", request.readUpTo, now);
    if (upTo > now + limits.maxFutureSkewMs) {
      throw invalidArgument("read_up_to", "must not be in the future");
    }
    await checkMayMarkRead(store, tenant, { ...grant, readerId });

    // Receipts first, horizon last: if this call dies half way, a retry redoes the range.
    const previous = await store.getHorizon(tenant, conversationId, readerId);
    let markedCount = 0;
    if (previous === undefined || upTo > previous) {
      let cursor: TrackedMessage | undefined;
      for (;;) {
        signal?.throwIfAborted();
        const batch = await store.listMessagesSentBetween(
          tenant,
          conversationId,
          { after: previous, upTo },
          cursor,
          markBatchSize,
        );
        const mine = batch.filter((m) => m.senderId !== readerId);
        const included = await audience.includes(tenant, readerId, mine);
        signal?.throwIfAborted();
        const recorded = await this.#recorder.record(
          tenant,
          readerId,
          mine.filter((_, i) => included[i]),
          undefined,
          now,
        );
        markedCount += recorded.filter((r) => r.inserted).length;
        if (batch.length < markBatchSize) break;
        cursor = batch.at(-1);
      }
    }
    signal?.throwIfAborted();
    const horizon = await store.advanceHorizon(tenant, conversationId, readerId, upTo, now);
    if (horizon.current !== horizon.previous) {
      const readUpTo = horizon.current;
      const retentionMs = this.#parts.retentionOf(tenant);
      const expiresAt = retentionMs === undefined ? undefined : readUpTo + retentionMs;
      await store.noteHorizonSet(tenant, conversationId, readerId, readUpTo, now, expiresAt);
      const hidden = await this.#parts.privacy.hidesInConversation(
        tenant,
        readerId,
        conversationId,
      );
      this.#announcer.announce(
        tenant,
        [{ kind: "horizon", conversationId, readerId, readUpTo, ...(hidden && privateChange) }],
        [{ kind: "horizon", tenant, conversationId, readerId, readUpTo, at: now }],
      );
    }
    return { readUpTo: horizon.current, markedCount };
  }

  /**
   * Messages tracked after a reader already marked the conversation read past
   * their sent_at count as read by that reader.
   */
  async applyExisting(tenant: string, messages: readonly TrackedMessage[]): Promise<void> {
    const { store, audience } = this.#parts;
    for (const [conversationId, group] of Map.groupBy(messages, (m) => m.conversationId)) {
      const earliest = Math.min(...group.map((m) => m.sentAt));
      const horizons = await store.horizonsFrom(tenant, conversationId, earliest);
      for (const { readerId, readUpTo } of horizons) {
        const covered = group.filter((m) => m.sentAt <= readUpTo && m.senderId !== readerId);
        const included = await audience.includes(tenant, readerId, covered);
        const read = covered.filter((_, i) => included[i]);
        if (read.length === 0) continue;
        // Read when the horizon that covers each was set, not now (now if that was not noted).
        const setTimes = await store.horizonSetTimes(
          tenant,
          conversationId,
          readerId,
          read.map((m) => m.sentAt),
        );
        const now = this.#parts.clock();
        const byTime = Map.groupBy(read, (_, i) => setTimes[i] ?? now);
        for (const [readAt, byReadAt] of byTime) {
          await this.#recorder.record(tenant, readerId, byReadAt, undefined, readAt);
        }
      }
    }
  }
}
