import type { ReceiptStore } from "../store/receipt-store.js";
import type { AccessPolicy } from "./access-policy.js";
import type { Audience } from "./audience.js";
import type { ReaderView } from "./reader-view.js";
import type { ReceiptPrivacy } from "./receipt-privacy.js";

/** What the parts of the receipt service (see receipt-service.ts) share, built once by it. */
export interface ReceiptParts {
  readonly store: ReceiptStore;
  readonly clock: () => number;
  readonly audience: Audience;
  /** Decides which reads are private. */
  readonly privacy: ReceiptPrivacy;
  /** Receipts as one user sees them. */
  readonly view: ReaderView;
  /** Every RPC begins with it and goes on with the ids it checked and the rows it read. */
  readonly policy: AccessPolicy;
  /** The tenant's retention (ms), asked on every call; undefined keeps messages until deleted. */
  readonly retentionOf: (tenant: string) => number | undefined;
}
