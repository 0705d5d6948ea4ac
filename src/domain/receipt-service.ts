import type { ChangeFeed } from "../store/change-feed.js";
import type { ReceiptStore } from "../store/receipt-store.js";
import { AccessPolicy } from "./access-policy.js";
import { Audience } from "./audience.js";
import type { Caller } from "./caller.js";
import { ChangeAnnouncer } from "./change-announcer.js";
import { ConversationHorizons, type MarkConversationReadRequest } from "./conversation-horizons.js";
import { describeDeletions } from "./deletion-outcomes.js";
import { MessageTracking } from "./message-tracking.js";
import type { MessageReadMembers, MessageReceipt, Page, ReadMember } from "./model.js";
import { describePending } from "./pending-changes.js";
import { PrivateReads } from "./private-reads.js";
import {
  type BatchGetReadMembersRequest,
  type ListReadMembersRequest,
  ReadMemberLists,
} from "./read-member-lists.js";
import { ReaderView } from "./reader-view.js";
import type { ReceiptParts } from "./receipt-parts.js";
import { ReceiptPrivacy } from "./receipt-privacy.js";
import { type GetReceiptsRequest, ReceiptReads } from "./receipt-reads.js";
import { ReceiptRecorder, type SendReceiptsRequest } from "./receipt-recorder.js";
import type { TrackedMessageInput } from "./tracked-message-input.js";

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
  /** Who may do what (the tenants' settings); default: every tenant on the default settings. */
  readonly policy?: AccessPolicy;
  /** The tenant's retention (ms), asked on every call; undefined keeps messages until deleted. */
  readonly retentionOf?: (tenant: string) => number | undefined;
}

/**
 * The ReadReceiptService's RPCs but the stream (ReceiptWatcher), one method each: it takes the
 * caller, authorizes it (AccessPolicy), validates every input before anything is written, so
 * that one bad id rejects the whole call and changes nothing, and reads each row once. The
 * work is done by its parts: tracking messages, recording receipts, reading them and their
 * member lists, and read horizons.
 */
export class ReceiptService {
  readonly #tracking: MessageTracking;
  readonly #recorder: ReceiptRecorder;
  readonly #reads: ReceiptReads;
  readonly #memberLists: ReadMemberLists;
  readonly #horizons: ConversationHorizons;
  /** Gets every stored change into the change log; its sweep is started by the app. */
  readonly announcer: ChangeAnnouncer;

  constructor(deps: ReceiptServiceDeps) {
    const { store } = deps;
    const privacy = deps.privacy ?? new ReceiptPrivacy({ store });
    const parts: ReceiptParts = {
      store,
      clock: deps.clock ?? Date.now,
      audience: new Audience(store),
      privacy,
      view: new ReaderView(store, privacy),
      policy: deps.policy ?? new AccessPolicy({ store }),
      retentionOf: deps.retentionOf ?? (() => undefined),
    };
    const reads = new ReceiptReads(parts);
    this.announcer = new ChangeAnnouncer({
      store,
      feed: deps.feed,
      clock: parts.clock,
      describe: (tenant, pending) =>
        describeDeletions(store, tenant, pending, (others) =>
          describePending(parts, reads, tenant, others),
        ),
      onError: deps.onAnnounceError,
      ...deps.announce,
    });
    const privateReads = new PrivateReads({
      store,
      announcer: this.announcer,
      describe: (tenant, messages) => reads.describe(tenant, messages),
    });
    this.#reads = reads;
    this.#recorder = new ReceiptRecorder(parts, reads, privateReads, this.announcer);
    this.#memberLists = new ReadMemberLists(parts, reads);
    this.#horizons = new ConversationHorizons(parts, this.#recorder, this.announcer);
    this.#tracking = new MessageTracking(parts, this.#horizons);
  }

  trackMessages(
    tenant: string,
    caller: Caller,
    inputs: readonly TrackedMessageInput[],
  ): Promise<{ trackedCount: number }> {
    return this.#tracking.trackMessages(tenant, caller, inputs);
  }

  sendReceipts(
    tenant: string,
    caller: Caller,
    request: SendReceiptsRequest,
  ): Promise<MessageReceipt[]> {
    return this.#recorder.sendReceipts(tenant, caller, request);
  }

  getReceipts(
    tenant: string,
    caller: Caller,
    request: GetReceiptsRequest,
  ): Promise<MessageReceipt[]> {
    return this.#reads.getReceipts(tenant, caller, request);
  }

  listReadMembers(
    tenant: string,
    caller: Caller,
    request: ListReadMembersRequest,
    /** Aborted when the caller gives up (deadline, cancel): no store call starts after that. */
    signal?: AbortSignal,
  ): Promise<Page<ReadMember>> {
    return this.#memberLists.listReadMembers(tenant, caller, request, signal);
  }

  batchGetReadMembers(
    tenant: string,
    caller: Caller,
    request: BatchGetReadMembersRequest,
    signal?: AbortSignal,
  ): Promise<MessageReadMembers[]> {
    return this.#memberLists.batchGetReadMembers(tenant, caller, request, signal);
  }

  markConversationRead(
    tenant: string,
    caller: Caller,
    request: MarkConversationReadRequest,
    /** Aborted when the caller gives up: the batch loop stops before its next store call. */
    signal?: AbortSignal,
  ): Promise<{ readUpTo: number; markedCount: number }> {
    return this.#horizons.markConversationRead(tenant, caller, request, signal);
  }
}
