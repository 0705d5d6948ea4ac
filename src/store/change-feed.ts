import type { PositionedChange, ReceiptChange } from "../domain/model.js";

/**
 * The log of receipt changes of each tenant, kept for a retention window, and
 * its live delivery. The embedded backend keeps it in SQLite and delivers in
 * process; the Redis backend keeps it in a stream and delivers across
 * instances.
 *
 * Positions are opaque strings, ordered by `comparePositions`.
 */
export interface ChangeFeed {
  /** Appends changes to the tenant's log, then delivers them to listeners. */
  publish(tenant: string, changes: readonly ReceiptChange[]): Promise<PositionedChange[]>;

  /**
   * Changes after `position`, oldest first, at most `limit`. Throws
   * ChangeLogExpiredError when changes after it may have been dropped.
   */
  readAfter(tenant: string, position: string, limit: number): Promise<PositionedChange[]>;

  /** Position of the newest change of the tenant, or the feed's origin. */
  head(tenant: string): Promise<string>;

  /** Calls `listener` for every change published from now on. Returns an unsubscribe. */
  listen(tenant: string, listener: (change: PositionedChange) => void): () => void;

  /** Negative when a is before b, 0 when equal, positive when after; throws on a malformed position. */
  comparePositions(a: string, b: string): number;

  /** Whether `position` has the shape of this feed's positions. */
  isPosition(position: string): boolean;

  close(): Promise<void>;
}

export class ChangeLogExpiredError extends Error {
  override readonly name = "ChangeLogExpiredError";
}
