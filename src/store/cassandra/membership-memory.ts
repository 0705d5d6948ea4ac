import { LRUCache } from "lru-cache";
import type { MembershipInterval } from "../receipt-store.js";

/** Past this many remembered times or users, a group's memory starts over. */
const maxFactsPerGroup = 4_096;

/**
 * What this process remembers of one group's membership history, valid for
 * one version of the group only: member counts at given times and users'
 * intervals, each exactly as Cassandra answered it.
 */
export class GroupMemory {
  readonly #counts = new Map<number, number>();
  readonly #intervals = new Map<string, readonly MembershipInterval[]>();

  constructor(readonly version: number) {}

  countAt(at: number): number | undefined {
    return this.#counts.get(at);
  }

  intervalsOf(userId: string): readonly MembershipInterval[] | undefined {
    return this.#intervals.get(userId);
  }

  rememberCount(at: number, members: number): void {
    if (this.#counts.size >= maxFactsPerGroup) this.#counts.clear();
    this.#counts.set(at, members);
  }

  rememberIntervals(userId: string, intervals: readonly MembershipInterval[]): void {
    if (this.#intervals.size >= maxFactsPerGroup) this.#intervals.clear();
    this.#intervals.set(userId, intervals);
  }
}

/**
 * Membership history is read far more often than it changes (every
 * GetReceipts needs each message's audience size), so a process keeps what it
 * read, per group and tagged with the group's version: the write time of the
 * group's latest completed change (group_sizes.last_ts), which a change sets
 * only after all its rows are written. A caller reads the version first and
 * is answered only from memory of that same version, and only when no change
 * holds the group's lock; so a change acknowledged by any instance is seen by
 * every call that starts after it, and no instance needs to be told.
 */
export class MembershipMemory {
  readonly #groups: LRUCache<string, GroupMemory>;

  constructor(maxGroups: number) {
    this.#groups = new LRUCache({ max: maxGroups });
  }

  /** The memory of a group at `version`: a fresh one when the group has changed since. */
  of(tenant: string, groupId: string, version: number): GroupMemory {
    const key = `${tenant}\u0000${groupId}`;
    const known = this.#groups.get(key);
    if (known !== undefined && known.version === version) return known;
    const fresh = new GroupMemory(version);
    // A caller that read an older version than the one remembered (a slow
    // answer) fills a memory of its own rather than replace the newer one.
    if (known === undefined || known.version < version) this.#groups.set(key, fresh);
    return fresh;
  }
}
