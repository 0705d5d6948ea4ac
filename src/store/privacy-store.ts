import type { NewReceipt } from "./receipt-store.js";

/**
 * Receipt settings and private reads, apart from the shared ledger: the ledger's counts,
 * listings and caches only ever hold reads that are shown.
 */
export interface PrivacyStore {
  /** What the user set: its default (undefined: none) and its per-conversation overrides. */
  getReceiptSettings(tenant: string, userId: string): Promise<StoredReceiptSettings>;

  /**
   * Sets (or with undefined removes) the user's default (conversationId "") and
   * per-conversation settings, all in one write.
   */
  putReceiptSettings(
    tenant: string,
    userId: string,
    changes: readonly ReceiptSettingChange[],
  ): Promise<void>;

  /**
   * Records private reads; for each whether it was the reader's first private read of that
   * message. Idempotent like insertReceipts; nothing is counted or kept as a pending change.
   */
  insertPrivateReceipts(
    tenant: string,
    readerId: string,
    receipts: readonly NewReceipt[],
  ): Promise<boolean[]>;

  /** The read_at of the reader's private reads of these messages; unread ones are absent. */
  privateReadTimes(
    tenant: string,
    readerId: string,
    messageIds: readonly string[],
  ): Promise<Map<string, number>>;

  /** The reader's private reads ordered by message id, after `afterMessageId` (export). */
  listPrivateReceipts(
    tenant: string,
    readerId: string,
    afterMessageId: string | undefined,
    limit: number,
  ): Promise<PrivateReceipt[]>;

  /** Removes every private read of these messages (deleted messages); says how many. */
  deletePrivateReceiptsOf(tenant: string, messageIds: readonly string[]): Promise<number>;

  /** Removes every setting and private read of the user (erasure); says how many of each. */
  eraseUserPrivacy(
    tenant: string,
    userId: string,
  ): Promise<{ readonly settings: number; readonly privateReceipts: number }>;
}

export type ReceiptVisibility = "shared" | "private";

export interface StoredReceiptSettings {
  readonly defaultVisibility: ReceiptVisibility | undefined;
  /** Per-conversation overrides by conversation id. */
  readonly conversations: ReadonlyMap<string, ReceiptVisibility>;
}

export interface ReceiptSettingChange {
  /** "" for the user's default. */
  readonly conversationId: string;
  /** Undefined removes the setting. */
  readonly visibility: ReceiptVisibility | undefined;
}

export interface PrivateReceipt {
  readonly messageId: string;
  readonly conversationId: string;
  readonly readAt: number;
}
