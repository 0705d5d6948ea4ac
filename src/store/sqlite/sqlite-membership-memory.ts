import type { DatabaseSync, StatementSync } from "node:sqlite";
import { LRUCache } from "lru-cache";
import type { MembershipInterval } from "../receipt-store.js";

/** What one group's history answered so far: member counts by time, intervals by user. */
interface GroupFacts {
  readonly counts: Map<number, number>;
  readonly intervals: Map<string, readonly MembershipInterval[]>;
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
 * process) changes `PRAGMA data_version`, checked before each use: then
 * everything is dropped.
 */
export class SqliteMembershipMemory {
  readonly #groups: LRUCache<string, GroupFacts>;
  readonly #dataVersion: StatementSync;
  #seenVersion: unknown;

  constructor(db: DatabaseSync, maxFacts = defaultMaxFacts) {
    this.#groups = new LRUCache({
      maxSize: maxFacts,
      sizeCalculation: (facts) => 1 + facts.counts.size + facts.intervals.size,
    });
    this.#dataVersion = db.prepare("PRAGMA data_version");
    this.#seenVersion = this.#readVersion();
    watchMembershipRows(db).add((tenant, groupId) =>
      this.#groups.delete(groupKey(tenant, groupId)),
    );
  }

  countAt(tenant: string, groupId: string, at: number, read: () => number): number {
    const facts = this.#factsOf(tenant, groupId);
    let count = facts.counts.get(at);
    if (count === undefined) {
      count = read();
      facts.counts.set(at, count);
      this.#resize(tenant, groupId, facts);
    }
    return count;
  }

  intervalsOf(
    tenant: string,
    groupId: string,
    userId: string,
    read: () => readonly MembershipInterval[],
  ): readonly MembershipInterval[] {
    const facts = this.#factsOf(tenant, groupId);
    let intervals = facts.intervals.get(userId);
    if (intervals === undefined) {
      intervals = read();
      facts.intervals.set(userId, intervals);
      this.#resize(tenant, groupId, facts);
    }
    return intervals;
  }

  #factsOf(tenant: string, groupId: string): GroupFacts {
    const version = this.#readVersion();
    if (version !== this.#seenVersion) {
      this.#seenVersion = version;
      this.#groups.clear();
    }
    const key = groupKey(tenant, groupId);
    let facts = this.#groups.get(key);
    if (facts === undefined) {
      facts = { counts: new Map(), intervals: new Map() };
      this.#groups.set(key, facts);
    }
    return facts;
  }

  /** Sets the group again so that its size counts its new fact (a group too large is not kept). */
  #resize(tenant: string, groupId: string, facts: GroupFacts): void {
    this.#groups.set(groupKey(tenant, groupId), facts);
  }

  #readVersion(): unknown {
    return (this.#dataVersion.get() as { data_version: number }).data_version;
  }
}

const groupKey = (tenant: string, groupId: string) => `${tenant}\u0000${groupId}`;

type RowChanged = (tenant: string, groupId: string) => void;
/** One set of triggers per connection, however many stores share it. */
const watchers = new WeakMap<DatabaseSync, Set<RowChanged>>();

function watchMembershipRows(db: DatabaseSync): Set<RowChanged> {
  let listeners = watchers.get(db);
  if (listeners !== undefined) return listeners;
  const registered = new Set<RowChanged>();
  listeners = registered;
  watchers.set(db, registered);
  db.function("receipts_membership_changed", (tenant, groupId) => {
    for (const listener of registered) listener(String(tenant), String(groupId));
    return null;
  });
  for (const table of ["memberships", "groups"]) {
    for (const [event, row] of [
      ["INSERT", "NEW"],
      ["UPDATE", "OLD"],
      ["UPDATE", "NEW"],
      ["DELETE", "OLD"],
    ]) {
      db.exec(
        `CREATE TEMP TRIGGER IF NOT EXISTS forget_${table}_${event}_${row} AFTER ${event} ON main.${table}
         BEGIN SELECT receipts_membership_changed(${row}.tenant, ${row}.group_id); END`,
      );
    }
  }
  return registered;
}
