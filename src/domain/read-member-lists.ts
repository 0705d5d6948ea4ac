import type { AudienceMeasure } from "./audience.js";
import { type Caller, viewerOf } from "./caller.js";
import { invalidArgument, memberListsWithheld } from "./errors.js";
import type { MessageReadMembers, Page, ReadFilter, ReadMember, TrackedMessage } from "./model.js";
import { decodePageToken } from "./page-token.js";
import { firstPages, firstPagesToRead, pageOf, readMembersScope } from "./read-member-pages.js";
import type { ReceiptParts } from "./receipt-parts.js";
import { type ReceiptReads, trackedMessagesOf } from "./receipt-reads.js";
import { pageSize } from "./validate.js";

/** BatchGetReadMembers in domain terms. */
export type BatchGetReadMembersRequest = {
  conversationId: string;
  messageIds: readonly string[];
  pageSize: number;
};

/** ListReadMembers in domain terms; filter undefined is refused. */
export type ListReadMembersRequest = {
  conversationId: string;
  messageId: string;
  filter: ReadFilter | undefined;
  pageSize: number;
  pageToken: string;
};

/** ListReadMembers and BatchGetReadMembers: who has and has not read a message. */
export class ReadMemberLists {
  readonly #parts: ReceiptParts;
  readonly #reads: ReceiptReads;

  constructor(parts: ReceiptParts, reads: ReceiptReads) {
    this.#parts = parts;
    this.#reads = reads;
  }

  async listReadMembers(
    tenant: string,
    caller: Caller,
    request: ListReadMembersRequest,
    /** Aborted when the caller gives up (deadline, cancel): no store call starts after that. */
    signal?: AbortSignal,
  ): Promise<Page<ReadMember>> {
    const grant = await this.#parts.policy.authorizeListReadMembers(tenant, caller, request);
    const filter = request.filter;
    if (filter === undefined) {
      throw invalidArgument("filter", "must be READ_FILTER_READ or READ_FILTER_UNREAD");
    }
    const size = pageSize(request.pageSize);
    const scope = readMembersScope(grant.messageId, filter);
    const after = decodePageToken("page_token", request.pageToken, scope);
    const [message] = trackedMessagesOf(grant, "message_id");
    if (message === undefined) throw new Error("unreachable: the grant holds the one id");
    signal?.throwIfAborted();

    // One extra row tells whether another page follows.
    const rows: ReadMember[] =
      filter === "read"
        ? await this.#parts.store.listReaders(tenant, message, after, size + 1)
        : await this.#unreadMembers(tenant, message, after, size + 1);
    const seen = { message, filter, after };
    // The user the page is for: reciprocity applies (C2C).
    const viewerId = viewerOf(caller, "");
    return pageOf(await this.#parts.view.membersSeenBy(tenant, viewerId, seen, rows), size, scope);
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
    caller: Caller,
    request: BatchGetReadMembersRequest,
    signal?: AbortSignal,
  ): Promise<MessageReadMembers[]> {
    const grant = await this.#parts.policy.authorizeBatchGetReadMembers(tenant, caller, request);
    const size = pageSize(request.pageSize);
    const messages = trackedMessagesOf(grant);
    const measures = await this.#parts.audience.measure(tenant, messages);
    for (const [i, message] of messages.entries()) {
      const { memberCount } = measures[i] as AudienceMeasure;
      if (message.conversationType === "group" && memberCount > grant.maxGroupSize) {
        throw memberListsWithheld(memberCount, grant.maxGroupSize, `message_ids[${i}]`);
      }
    }
    signal?.throwIfAborted();
    const state = await this.#reads.readState(tenant, messages);
    const shared = messages.map((m, i) =>
      this.#reads.describeOne(m, state, (measures[i] as AudienceMeasure).audienceSize),
    );

    // C2C pages follow from the receipts: a receiver withheld by reciprocity is listed unread.
    const receipts = await this.#parts.view.reciprocal(tenant, viewerOf(caller, ""), shared);
    const read = firstPagesToRead(receipts);
    signal?.throwIfAborted();
    // One extra row per page tells whether another page follows.
    const rows = await this.#parts.store.listFirstPages(tenant, read, size + 1);
    return firstPages(receipts, read, rows, size);
  }

  async #unreadMembers(
    tenant: string,
    message: TrackedMessage,
    after: string | undefined,
    limit: number,
  ): Promise<ReadMember[]> {
    const { store } = this.#parts;
    if (message.conversationType === "group") {
      const ids = await store.listUnreadMembers(tenant, message, after, limit);
      return ids.map((userId) => ({ userId }));
    }
    if (after !== undefined && message.receiverId <= after) return [];
    const read = await store.hasRead(tenant, message.receiverId, [message.messageId]);
    return read.has(message.messageId) ? [] : [{ userId: message.receiverId }];
  }
}
