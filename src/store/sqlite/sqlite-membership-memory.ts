import type { DatabaseSync } from "node:sqlite";
import { LRUCache } from "lru-cache";
import type { MembershipInterval } from "../receipt-store.js";
import { keepExact, memoryKey, type OtherConnectionsCommits } from "./sqlite-row-changes.js";

/** What one group's history answered so far: member counts by time, intervals by user. */
interface GroupFacts {
  readonly counts: Map<number, number>;
  readonly intervals: Map<string, readonly MembershipInterval[]>;
}

/** One group's facts, read through on a miss. */
export interface KnownGroup {
  countAt(at: number, read: () => number): number;
  intervalsOf(
    userId: string,
    read: () => readonly MembershipInterval[],
  ): readonly MembershipInterval[];
}

/** Facts kept in all (counts and users' intervals); about 50,000 × 150 bytes at most. */
const defaultMaxFacts = 50_000;

/**
 * Membership history is read on every GetReceipts and SendReceipts (each
 * message's audience size, the reader's membership) and changes rarely, so
 * the embedded store keeps what it read, per group, as the Cassandra store
 * does (src/store/cassandra/membership-memory.ts). Invalidation is exact
 * rather than versioned: temporary triggers on this connection call back
 * into the process for every row of `memberships` or `groups` that is
 * inserted, updated or deleted, by any statement, and the group's facts are
 * dropped there and then, inside the write. The writes and the reads of this
 * connection are synchronous, so no read runs between a change and its
 * callback. A commit by another connection to the same file (a second
 * process) changes `PRAGMA data_version`, looked at before each use: then
 * everything is dropped.
 */
export class SqliteMembershipMemory {
  readonly #groups: LRUCache<string, GroupFacts>;
  readonly #otherCommits: OtherConnectionsCommits;

  constructor(db: DatabaseSync, maxFacts = defaultMaxFacts) {
    this.#groups = new LRUCache({
      maxSize: maxFacts,
      sizeCalculation: (facts) => 1 + facts.counts.size + facts.intervals.size,
    });
    this.#otherCommits = keepExact(
      db,
      "membership",
      [
        { table: "memberships", keyColumn: "group_id" },
        { table: "groups", keyColumn: "group_id" },
      ],
      this.#groups,
    );
  }

  /**
   * What is known of one group, checked against other connections' commits once: use it for
   * one store call (synchronous underneath), then ask again.
   */
  group(tenant: string, groupId: string): KnownGroup {
    this.#otherCommits.look();
    const key = memoryKey(tenant, groupId);
    let facts = this.#groups.get(key);
    if (facts === undefined) {
      facts = { counts: new Map(), intervals: new Map() };
      this.#groups.set(key, facts);
    }
    const known = facts;
    const readThrough = <K, V>(facts: Map<K, V>, key: K, read: () => V): V => {
      let value = facts.get(key);
      if (value === undefined) {
        value = read();
        facts.set(key, value);
        // Set again, so that the group's size counts the new fact (a group too large for the
        // bound is not kept).
        this.#groups.set(memoryKey(tenant, groupId), known);
      }
      return value;
    };
    return {
      countAt: (at, read) => readThrough(known.counts, at, read),
      intervalsOf: (userId, read) => readThrough(known.intervals, userId, read),
    };
  }
}
