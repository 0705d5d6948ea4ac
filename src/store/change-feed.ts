import type { PositionedChange, ReceiptChange } from "../domain/model.js";

/**
 * The log of receipt changes of each tenant, kept for a retention window, and
 * its live delivery. The embedded backend keeps it in SQLite and delivers in
 * process; the Redis backend keeps it in a stream and delivers across
 * instances.
 *
 * Positions are opaque strings, ordered by `comparePositions`, counted per
 * tenant: one tenant's positions never move with another tenant's traffic.
 */
export interface ChangeFeed {
  /**
   * Appends changes to the tenant's log, then delivers them to listeners.
   * Whatever order publishes arrive in, from any number of instances, the
   * log keeps these promises (for the retention window):
   * - a receipt (message, reader) is appended once; publishing it again appends nothing;
   * - a message's read count never decreases along the log: a receipt whose count is below
   *   one already appended carries that higher count (until `forgetReceipts`);
   * - a reader's horizon in a conversation never moves back: an older one appends nothing;
   * - a message's deletion is appended once, and removes the message's receipt entries from
   *   the log (a replay never shows them again); a receipt of a deleted message appends nothing.
   * Resolves with what it appended. Rejects when the log cannot be reached; then some or
   * none were appended, and publishing the same changes again is safe.
   */
  publish(tenant: string, changes: readonly ReceiptChange[]): Promise<PositionedChange[]>;

  /**
   * After receipts were withdrawn (a backdated removal): their readers may be
   * announced again and the messages' counts may go down.
   */
  forgetReceipts(
    tenant: string,
    receipts: readonly { readonly messageId: string; readonly readerId: string }[],
  ): Promise<void>;

  /**
   * Changes after `position`, oldest first, at most `limit`. Throws
   * ChangeLogExpiredError when changes after it may have been dropped.
   */
  readAfter(tenant: string, position: string, limit: number): Promise<PositionedChange[]>;

  /** Position of the newest change of the tenant, or the feed's origin. */
  head(tenant: string): Promise<string>;

  /**
   * Calls `listener` for every change published from now on, in position
   * order. `interrupted` is called when this process can no longer follow the
   * log (its backend is unreachable): changes may be missed until a reader
   * resumes from its last position. Returns an unsubscribe.
   */
  listen(
    tenant: string,
    listener: (change: PositionedChange) => void,
    interrupted?: (error: Error) => void,
  ): () => void;

  /**
   * Calls `bell` when changes may have been appended to the tenant's log from now on, without
   * reading them (for a reader that reads with readAfter itself: webhook delivery). Rings may
   * be coalesced or, rarely, lost: such a reader also polls. `interrupted` as for listen.
   * Returns an unsubscribe.
   */
  ring(tenant: string, bell: () => void, interrupted?: (error: Error) => void): () => void;

  /** Negative when a is before b, 0 when equal, positive when after; throws on a malformed position. */
  comparePositions(a: string, b: string): number;

  /** Whether `position` has the shape of this feed's positions. */
  isPosition(position: string): boolean;

  close(): Promise<void>;
}

export { ChangeLogExpiredError } from "../domain/errors.js";
