import type { PrivacyStore, ReceiptLedger } from "../store/receipt-store.js";
import type { ChangeAnnouncer } from "./change-announcer.js";
import type { MessageReceipt, ReceiptChange, TrackedMessage } from "./model.js";

/** What recording a read says: whether it was new; the shown count, for a shown read only. */
export interface RecordedRead {
  readonly messageId: string;
  readonly inserted: boolean;
  readonly readCount?: number;
  /** The message was deleted while its shown read was being recorded (nothing kept). */
  readonly deleted?: boolean;
}

export interface PrivateReadsDeps {
  readonly store: Pick<PrivacyStore, "insertPrivateReceipts"> & Pick<ReceiptLedger, "hasRead">;
  readonly announcer: ChangeAnnouncer;
  /** The messages' receipts as everyone sees them (shown reads only). */
  readonly describe: (
    tenant: string,
    messages: readonly TrackedMessage[],
  ) => Promise<MessageReceipt[]>;
}

/**
 * Records private reads: apart from the shared ledger, so that no count, listing, cache or
 * webhook of others ever holds them. A message the reader already read while shown stays
 * shown (a read shown before stays shown). New private reads are published as private changes,
 * which only streams filtered on their reader receive; they carry the shared count, and the
 * stream adds the reader's own read (asSeenByItsReader). They are not kept in the outbox: if
 * the change log cannot be reached, the reader's other devices see the read on their next
 * GetReceipts instead of live.
 */
export class PrivateReads {
  readonly #deps: PrivateReadsDeps;

  constructor(deps: PrivateReadsDeps) {
    this.#deps = deps;
  }

  async record(
    tenant: string,
    readerId: string,
    messages: readonly TrackedMessage[],
    readAt: number,
  ): Promise<RecordedRead[]> {
    const { store, announcer, describe } = this.#deps;
    const shown = await store.hasRead(
      tenant,
      readerId,
      messages.map((m) => m.messageId),
    );
    const toStore = messages.filter((m) => !shown.has(m.messageId));
    const inserted = await store.insertPrivateReceipts(
      tenant,
      readerId,
      toStore.map((message) => ({ message, readAt })),
    );
    const fresh = toStore.filter((_, i) => inserted[i]);
    if (fresh.length > 0) {
      const receipts = await describe(tenant, fresh);
      const changes: ReceiptChange[] = receipts.map((receipt) => ({
        kind: "receipt",
        receipt,
        readerId,
        readAt,
        private: true,
      }));
      announcer.announce(tenant, changes, []);
    }
    const freshIds = new Set(fresh.map((m) => m.messageId));
    return messages.map((m) => ({ messageId: m.messageId, inserted: freshIds.has(m.messageId) }));
  }
}
