/** Reads a message's reader ids from the source of truth, a page at a time. */
export type ReaderSource = () => AsyncIterable<readonly string[]>;

/**
 * A cache of read counts in front of the readers partitions. It may always
 * answer "don't know" (undefined / absent), and then the store counts in
 * Cassandra; it must never answer a wrong number. The Redis implementation
 * lives in src/store/redis/.
 */
export interface ReadCountCache {
  /**
   * Counts for the messages. Hot entries answer without touching the source;
   * cold ones are rebuilt from `readers`. Ids the cache cannot answer for are
   * absent from the map.
   */
  readCounts(
    tenant: string,
    messageIds: readonly string[],
    readers: (messageId: string) => ReaderSource,
  ): Promise<Map<string, number>>;

  /**
   * Called once `readerId`'s receipt for the message is stored. Returns the
   * count including that reader, or undefined when the cache cannot tell.
   */
  readerRecorded(
    tenant: string,
    messageId: string,
    readerId: string,
    readers: ReaderSource,
  ): Promise<number | undefined>;

  /** Called once readers of these messages were deleted from the source. */
  readersDeleted(tenant: string, messageIds: readonly string[]): Promise<void>;

  close(): Promise<void>;
}
