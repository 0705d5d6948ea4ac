import type { ChangeFeed } from "../store/change-feed.js";
import type { ReceiptStore } from "../store/receipt-store.js";
import { Audience, type AudienceMeasure, type AudienceSizes } from "./audience.js";
import { ChangeAnnouncer, type PendingOutcome } from "./change-announcer.js";
import { describeDeletions, type PendingFact } from "./deletion-outcomes.js";
import { invalidArgument, memberListsWithheld, ReceiptError } from "./errors.js";
import { limits } from "./limits.js";
import { checkMayMarkRead } from "./mark-read-access.js";
import {
  type ConversationType,
  type MessageReadMembers,
  type MessageReceipt,
  type Page,
  pendingReceipt,
  privateChange,
  type ReadFilter,
  type ReadMember,
  type ReceiptChange,
  sameTrackedMessage,
  type TrackedMessage,
} from "./model.js";
import { decodePageToken } from "./page-token.js";
import { PrivateReads, type RecordedRead } from "./private-reads.js";
import { firstPages, firstPagesToRead, pageOf, readMembersScope } from "./read-member-pages.js";
import { ReaderView } from "./reader-view.js";
import { ReceiptPrivacy } from "./receipt-privacy.js";
import {
  alreadyTracked,
  type TrackedMessageInput,
  trackedMessageOf,
} from "./tracked-message-input.js";
import { optionalId, pageSize, requireId, requireIdList, requireTime } from "./validate.js";

export type { TrackedMessageInput } from "./tracked-message-input.js";

export interface ReceiptServiceDeps {
  readonly store: ReceiptStore;
  readonly feed: ChangeFeed;
  readonly clock?: () => number;
  /** Told when a change could not be published now (it stays pending and is swept later). */
  readonly onAnnounceError?: (error: unknown, what: string) => void;
  /** The outbox sweep's timing (see ChangeAnnouncer). */
  readonly announce?: { readonly graceMs?: number; readonly sweepMs?: number };
  /** Decides which reads are private (shared with PrivacyService); default: the store's settings. */
  readonly privacy?: ReceiptPrivacy;
  /** The tenant's retention (ms), asked on every call; undefined keeps messages until deleted. */
  readonly retentionOf?: (tenant: string) => number | undefined;
}

/** How many messages MarkConversationRead materialises per store round trip. */
const markBatchSize = 500;

/**
 * The read-receipt rules. Validates every input before anything is written,
 * so that one bad id rejects the whole call and changes nothing.
 */
export class ReceiptService {
  readonly #store: ReceiptStore;
  readonly #clock: () => number;
  readonly #audience: Audience;
  readonly #privacy: ReceiptPrivacy;
  readonly #privateReads: PrivateReads;
  readonly #view: ReaderView;
  readonly #retentionOf: (tenant: string) => number | undefined;
  /** Gets every stored change into the change log; its sweep is started by the app. */
  readonly announcer: ChangeAnnouncer;

  constructor(deps: ReceiptServiceDeps) {
    this.#store = deps.store;
    this.#clock = deps.clock ?? Date.now;
    this.#audience = new Audience(deps.store);
    this.#retentionOf = deps.retentionOf ?? (() => undefined);
    this.announcer = new ChangeAnnouncer({
      store: deps.store,
      feed: deps.feed,
      clock: this.#clock,
      describe: (tenant, pending) =>
        describeDeletions(deps.store, tenant, pending, (others) =>
          this.#describePending(tenant, others),
        ),
      onError: deps.onAnnounceError,
      ...deps.announce,
    });
    this.#privacy = deps.privacy ?? new ReceiptPrivacy({ store: deps.store });
    const describe = (tenant: string, messages: readonly TrackedMessage[]) =>
      this.#describe(tenant, messages);
    this.#privateReads = new PrivateReads({ ...deps, announcer: this.announcer, describe });
    this.#view = new ReaderView(deps.store, this.#privacy);
  }

  async trackMessages(
    tenant: string,
    inputs: readonly TrackedMessageInput[],
  ): Promise<{ trackedCount: number }> {
    if (inputs.length === 0) throw invalidArgument("messages", "must not be empty");
    if (inputs.length > limits.maxMessagesPerTrackCall) {
      throw invalidArgument(
        "messages",
        `must hold at most ${limits.maxMessagesPerTrackCall} messages, got ${inputs.length}`,
      );
    }
    const retention = { retentionMs: this.#retentionOf(tenant), now: this.#clock() };
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
    const existing = await this.#store.getMessages(
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

    const raced = await this.#store.insertMessages(tenant, fresh);
    if (raced.size > 0) {
      // Another call tracked some of these between our read and write: same data is fine.
      const winners = await this.#store.getMessages(tenant, [...raced]);
      for (const message of fresh) {
        const winner = winners.get(message.messageId);
        if (winner !== undefined && !sameTrackedMessage(winner, message)) {
          throw alreadyTracked(messages, message);
        }
      }
    }
    const inserted = fresh.filter((m) => !raced.has(m.messageId));
    await this.#applyExistingHorizons(tenant, inserted);
    return { trackedCount: inserted.length };
  }

  async sendReceipts(
    tenant: string,
    request: { conversationId: string; readerId: string; messageIds: readonly string[] },
  ): Promise<MessageReceipt[]> {
    const conversationId = requireId("conversation_id", request.conversationId);
    const readerId = requireId("reader_id", request.readerId);
    const ids = requireIdList("message_ids", request.messageIds, limits.maxIdsPerReceiptCall);
    const messages = await this.#messagesOf(tenant, conversationId, ids);

    const unique = [...new Map(messages.map((m) => [m.messageId, m])).values()];
    // A sender's receipt for its own message is ignored, not an error.
    const acknowledged = unique.filter((m) => m.senderId !== readerId);
    const included = await this.#audience.includes(tenant, readerId, acknowledged);
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
    const sized = this.#audience.sizes(tenant, messages, sizes);
    sized.catch(() => undefined); // awaited below; failing first must not count as unhandled
    const readAt = this.#clock();
    const recorded = await this.#record(tenant, readerId, acknowledged, sizes, readAt);
    const deleted = recorded.find((r) => r.deleted === true);
    if (deleted !== undefined) throw deletedMeanwhile(deleted.messageId, ids);
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
      const state = await this.#readState(tenant, unknown);
      for (const [id, count] of state.counts) if (!counts.has(id)) counts.set(id, count);
      for (const [id, at] of state.readTimes) readTimes.set(id, at);
    }
    const audienceSizes = await sized;
    const answer = messages.map((m, i) =>
      this.#audience.describe(
        m,
        counts.get(m.messageId) ?? 0,
        audienceSizes[i] as number,
        readTimes.get(m.messageId),
      ),
    );
    // Private reads: the reader's own view, its read counted.
    const hidden = recorded.some((r) => r.readCount === undefined);
    return hidden ? this.#view.asSeenBy(tenant, readerId, answer) : answer;
  }

  async getReceipts(
    tenant: string,
    /** viewerId: answer as that user sees them (its private reads, reciprocity). */
    request: { conversationId: string; messageIds: readonly string[]; viewerId?: string },
  ): Promise<MessageReceipt[]> {
    const conversationId = requireId("conversation_id", request.conversationId);
    const ids = requireIdList("message_ids", request.messageIds, limits.maxIdsPerReceiptCall);
    const viewerId = optionalId("viewer_id", request.viewerId ?? "");
    const messages = await this.#messagesOf(tenant, conversationId, ids);
    const receipts = await this.#describe(tenant, messages);
    return viewerId === undefined ? receipts : this.#view.asSeenBy(tenant, viewerId, receipts);
  }

  async listReadMembers(
    tenant: string,
    request: {
      conversationId: string;
      messageId: string;
      filter: ReadFilter | undefined;
      pageSize: number;
      pageToken: string;
      /** The user the page is for: reciprocity applies (C2C). */
      viewerId?: string;
    },
    /** Aborted when the caller gives up (deadline, cancel): no store call starts after that. */
    signal?: AbortSignal,
  ): Promise<Page<ReadMember>> {
    const conversationId = requireId("conversation_id", request.conversationId);
    const messageId = requireId("message_id", request.messageId);
    const filter = request.filter;
    if (filter === undefined) {
      throw invalidArgument("filter", "must be READ_FILTER_READ or READ_FILTER_UNREAD");
    }
    const size = pageSize(request.pageSize);
    const scope = readMembersScope(messageId, filter);
    const after = decodePageToken("page_token", request.pageToken, scope);
    const [message] = await this.#messagesOf(tenant, conversationId, [messageId], "message_id");
    if (message === undefined) throw new Error("unreachable: #messagesOf returns every id");
    signal?.throwIfAborted();

    // One extra row tells whether another page follows.
    const rows: ReadMember[] =
      filter === "read"
        ? await this.#store.listReaders(tenant, message, after, size + 1)
        : await this.#unreadMembers(tenant, message, after, size + 1);
    const seen = { message, filter, after };
    return pageOf(
      await this.#view.membersSeenBy(tenant, request.viewerId, seen, rows),
      size,
      scope,
    );
  }

  /**
   * Each message's receipt and the first page of both sides of its audience,
   * as GetReceipts and ListReadMembers would answer them. Reads the counts,
   * then only the pages that are not known to be empty from them: one page of
   * at most `pageSize + 1` members per side and group message, none for C2C
   * (its receiver's read time comes with the counts).
   */
  async batchGetReadMembers(
    tenant: string,
    request: {
      conversationId: string;
      messageIds: readonly string[];
      pageSize: number;
      /** The tenant's largest group with member lists (readMembers.maxGroupSize). */
      maxGroupSize: number;
      viewerId?: string;
    },
    signal?: AbortSignal,
  ): Promise<MessageReadMembers[]> {
    const conversationId = requireId("conversation_id", request.conversationId);
    const ids = requireIdList(
      "message_ids",
      request.messageIds,
      limits.maxIdsPerBatchGetReadMembers,
    );
    const size = pageSize(request.pageSize);
    const messages = await this.#messagesOf(tenant, conversationId, ids);
    const measures = await this.#audience.measure(tenant, messages);
    for (const [i, message] of messages.entries()) {
      const { memberCount } = measures[i] as AudienceMeasure;
      if (message.conversationType === "group" && memberCount > request.maxGroupSize) {
        throw memberListsWithheld(memberCount, request.maxGroupSize, `message_ids[${i}]`);
      }
    }
    signal?.throwIfAborted();
    const { counts, readTimes } = await this.#readState(tenant, messages);
    const shared = messages.map((m, i) =>
      this.#audience.describe(
        m,
        counts.get(m.messageId) ?? 0,
        (measures[i] as AudienceMeasure).audienceSize,
        readTimes.get(m.messageId),
      ),
    );

    // C2C pages follow from the receipts: a receiver withheld by reciprocity is listed unread.
    const receipts = await this.#view.reciprocal(tenant, request.viewerId, shared);
    const read = firstPagesToRead(receipts);
    signal?.throwIfAborted();
    // One extra row per page tells whether another page follows.
    const rows = await this.#store.listFirstPages(tenant, read, size + 1);
    return firstPages(receipts, read, rows, size);
  }

  async markConversationRead(
    tenant: string,
    request: { conversationId: string; readerId: string; readUpTo: number | undefined },
    /** Aborted when the caller gives up: the batch loop stops before its next store call. */
    signal?: AbortSignal,
  ): Promise<{ readUpTo: number; markedCount: number }> {
    const conversationId = requireId("conversation_id", request.conversationId);
    const readerId = requireId("reader_id", request.readerId);
    const now = this.#clock();
    const upTo = requireTime("read_up_to", request.readUpTo, now);
    if (upTo > now + limits.maxFutureSkewMs) {
      throw invalidArgument("read_up_to", "must not be in the future");
    }
    await checkMayMarkRead(this.#store, tenant, conversationId, readerId);

    // Receipts first, horizon last: if this call dies half way, a retry redoes the range.
    const previous = await this.#store.getHorizon(tenant, conversationId, readerId);
    let markedCount = 0;
    if (previous === undefined || upTo > previous) {
      let cursor: TrackedMessage | undefined;
      for (;;) {
        signal?.throwIfAborted();
        const batch = await this.#store.listMessagesSentBetween(
          tenant,
          conversationId,
          { after: previous, upTo },
          cursor,
          markBatchSize,
        );
        const mine = batch.filter((m) => m.senderId !== readerId);
        const included = await this.#audience.includes(tenant, readerId, mine);
        signal?.throwIfAborted();
        const recorded = await this.#record(
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
    const horizon = await this.#store.advanceHorizon(tenant, conversationId, readerId, upTo, now);
    if (horizon.current !== horizon.previous) {
      const readUpTo = horizon.current;
      const retentionMs = this.#retentionOf(tenant);
      const expiresAt = retentionMs === undefined ? undefined : readUpTo + retentionMs;
      await this.#store.noteHorizonSet(tenant, conversationId, readerId, readUpTo, now, expiresAt);
      const hidden = await this.#privacy.hidesInConversation(tenant, readerId, conversationId);
      this.announcer.announce(
        tenant,
        [{ kind: "horizon", conversationId, readerId, readUpTo, ...(hidden && privateChange) }],
        [{ kind: "horizon", tenant, conversationId, readerId, readUpTo, at: now }],
      );
    }
    return { readUpTo: horizon.current, markedCount };
  }

  /**
   * Records reads of one conversation, shown or private as the reader's privacy decides now,
   * and announces the new ones; says of each whether it was new, and (shown) its count.
   */
  async #record(
    tenant: string,
    readerId: string,
    messages: readonly TrackedMessage[],
    sizes: AudienceSizes = new Map(),
    readAt = this.#clock(),
  ): Promise<RecordedRead[]> {
    const [first] = messages;
    if (first === undefined) return [];
    const conversation = { conversationId: first.conversationId, type: first.conversationType };
    if (await this.#privacy.hides(tenant, readerId, conversation)) {
      return this.#privateReads.record(tenant, readerId, messages, readAt);
    }
    const recorded = await this.#store.insertReceipts(
      tenant,
      readerId,
      messages.map((message) => ({ message, readAt })),
    );
    const fresh = recorded.flatMap((outcome, i) =>
      outcome.inserted ? [{ outcome, message: messages[i] as TrackedMessage }] : [],
    );
    const audienceSizes = await this.#audience.sizes(
      tenant,
      fresh.map((f) => f.message),
      sizes,
    );
    const changes: ReceiptChange[] = fresh.map(({ outcome, message }, i) => ({
      kind: "receipt",
      // A C2C receipt is the receiver's (a sender's own is never recorded).
      receipt: this.#audience.describe(
        message,
        outcome.readCount,
        audienceSizes[i] as number,
        readAt,
      ),
      readerId,
      readAt,
    }));
    this.announcer.announce(
      tenant,
      changes,
      fresh.map(({ message }) => pendingReceipt(tenant, readerId, message, readAt)),
    );
    return recorded;
  }

  /**
   * Pending changes as they stand now, for the announcer's sweep: a receipt
   * with the message's current count (the log keeps counts from going down).
   */
  async #describePending(
    tenant: string,
    pending: readonly PendingFact[],
  ): Promise<PendingOutcome[]> {
    const receipts = pending.flatMap((p) => (p.kind === "receipt" ? [p] : []));
    const messages = await this.#store.getMessages(
      tenant,
      receipts.map((r) => r.messageId),
    );
    // Settled, not only looked up: the call that wrote them may have died before counting them.
    const stored = new Set<string>();
    for (const [readerId, of] of Map.groupBy(receipts, (r) => r.readerId)) {
      const read = await this.#store.settleReceipts(
        tenant,
        readerId,
        of.map((r) => r.messageId),
      );
      for (const messageId of read) stored.add(`${messageId}\u0000${readerId}`);
    }
    const described = [...messages.values()];
    const receiptsNow = new Map(
      (await this.#describe(tenant, described)).map((r) => [r.message.messageId, r]),
    );
    const outcomes: PendingOutcome[] = [];
    for (const change of pending) {
      if (change.kind === "horizon") {
        const horizon = await this.#store.getHorizon(
          tenant,
          change.conversationId,
          change.readerId,
        );
        if (horizon === undefined || horizon < change.readUpTo) {
          outcomes.push({ kind: "not-stored" });
          continue;
        }
        const { conversationId, readerId, readUpTo } = change;
        const hidden = await this.#privacy.hidesInConversation(tenant, readerId, conversationId);
        outcomes.push({
          kind: "announce",
          change: {
            kind: "horizon",
            conversationId,
            readerId,
            readUpTo,
            ...(hidden && privateChange),
          },
        });
        continue;
      }
      const receipt = receiptsNow.get(change.messageId);
      if (receipt === undefined) outcomes.push({ kind: "gone" });
      else if (!stored.has(`${change.messageId}\u0000${change.readerId}`)) {
        outcomes.push({ kind: "not-stored" });
      } else {
        outcomes.push({
          kind: "announce",
          change: { kind: "receipt", receipt, readerId: change.readerId, readAt: change.readAt },
        });
      }
    }
    return outcomes;
  }

  async #describe(
    tenant: string,
    messages: readonly TrackedMessage[],
    sizes: AudienceSizes = new Map(),
  ): Promise<MessageReceipt[]> {
    const [{ counts, readTimes }, audienceSizes] = await Promise.all([
      this.#readState(tenant, messages),
      this.#audience.sizes(tenant, messages, sizes),
    ]);
    return messages.map((m, i) =>
      this.#audience.describe(
        m,
        counts.get(m.messageId) ?? 0,
        audienceSizes[i] as number,
        readTimes.get(m.messageId),
      ),
    );
  }

  /**
   * Read counts, and when each C2C message's receiver read it. A C2C message's one possible
   * reader is its receiver, so its count comes from that read time, read instead of a count.
   */
  async #readState(
    tenant: string,
    messages: readonly TrackedMessage[],
  ): Promise<{ counts: Map<string, number>; readTimes: Map<string, number> }> {
    const unique = [...new Map(messages.map((m) => [m.messageId, m])).values()];
    const c2c = unique.filter((m) => m.conversationType === "c2c");
    const groups = unique.filter((m) => m.conversationType === "group");
    const [counts, readTimes] = await Promise.all([
      groups.length === 0 ? new Map<string, number>() : this.#store.readCounts(tenant, groups),
      c2c.length === 0 ? new Map<string, number>() : this.#store.receiverReadTimes(tenant, c2c),
    ]);
    for (const { messageId } of c2c) counts.set(messageId, readTimes.has(messageId) ? 1 : 0);
    return { counts, readTimes };
  }

  /** Loads messages in request order; every id must be tracked and belong to the conversation. */
  async #messagesOf(
    tenant: string,
    conversationId: string,
    ids: readonly string[],
    field = "message_ids",
  ): Promise<TrackedMessage[]> {
    const found = await this.#store.getMessages(tenant, ids);
    const indexed = field === "message_ids";
    return ids.map((id, i) => {
      const at = indexed ? `${field}[${i}]` : field;
      const message = found.get(id);
      if (message === undefined) {
        throw new ReceiptError("not_found", `message ${id} is not tracked`, at);
      }
      if (message.conversationId !== conversationId) {
        throw invalidArgument(
          at,
          `message ${id} does not belong to conversation ${conversationId}`,
        );
      }
      return message;
    });
  }

  async #unreadMembers(
    tenant: string,
    message: TrackedMessage,
    after: string | undefined,
    limit: number,
  ): Promise<ReadMember[]> {
    if (message.conversationType === "group") {
      const ids = await this.#store.listUnreadMembers(tenant, message, after, limit);
      return ids.map((userId) => ({ userId }));
    }
    if (after !== undefined && message.receiverId <= after) return [];
    const read = await this.#store.hasRead(tenant, message.receiverId, [message.messageId]);
    return read.has(message.messageId) ? [] : [{ userId: message.receiverId }];
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
        const stored = await this.#store.getConversation(tenant, message.conversationId);
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

  /**
   * Messages tracked after a reader already marked the conversation read past
   * their sent_at count as read by that reader.
   */
  async #applyExistingHorizons(tenant: string, messages: readonly TrackedMessage[]): Promise<void> {
    for (const [conversationId, group] of Map.groupBy(messages, (m) => m.conversationId)) {
      const earliest = Math.min(...group.map((m) => m.sentAt));
      const horizons = await this.#store.horizonsFrom(tenant, conversationId, earliest);
      for (const { readerId, readUpTo } of horizons) {
        const covered = group.filter((m) => m.sentAt <= readUpTo && m.senderId !== readerId);
        const included = await this.#audience.includes(tenant, readerId, covered);
        const read = covered.filter((_, i) => included[i]);
        if (read.length === 0) continue;
        // Read when the horizon that covers each was set, not now (now if that was not noted).
        const setTimes = await this.#store.horizonSetTimes(
          tenant,
          conversationId,
          readerId,
          read.map((m) => m.sentAt),
        );
        const now = this.#clock();
        const byTime = Map.groupBy(read, (_, i) => setTimes[i] ?? now);
        for (const [readAt, messages] of byTime) {
          await this.#record(tenant, readerId, messages, undefined, readAt);
        }
      }
    }
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
