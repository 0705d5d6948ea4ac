import { LRUCache } from "lru-cache";
import type { MembershipInterval } from "../receipt-store.js";

type Fact =
  | { readonly version: number; readonly members: number }
  | { readonly version: number; readonly intervals: readonly MembershipInterval[] };

/**
 * Membership history is read far more often than it changes (every
 * GetReceipts needs each message's audience size), so a process keeps what it
 * read: member counts at given times and users' intervals, each exactly as
 * Cassandra answered it and tagged with the group's version at the time, the
 * write time of the group's latest completed change (group_sizes.last_ts),
 * which a change sets only after all its rows are written. A caller reads the
 * version first and is answered only by facts of that same version, and only
 * when no change holds the group's lock; so a change acknowledged by any
 * instance is seen by every call that starts after it, and no instance needs
 * to be told. Facts of older versions are never read again and age out.
 */
export class MembershipMemory {
  readonly #facts: LRUCache<string, Fact>;

  constructor(maxFacts: number) {
    this.#facts = new LRUCache({ max: maxFacts });
  }

  countAt(tenant: string, groupId: string, version: number, at: number): number | undefined {
    const fact = this.#facts.get(countKey(tenant, groupId, at));
    return fact?.version === version && "members" in fact ? fact.members : undefined;
  }

  intervalsOf(
    tenant: string,
    groupId: string,
    version: number,
    userId: string,
  ): readonly MembershipInterval[] | undefined {
    const fact = this.#facts.get(userKey(tenant, groupId, userId));
    return fact?.version === version && "intervals" in fact ? fact.intervals : undefined;
  }

  rememberCount(tenant: string, groupId: string, version: number, at: number, members: number) {
    this.#remember(countKey(tenant, groupId, at), { version, members });
  }

  rememberIntervals(
    tenant: string,
    groupId: string,
    version: number,
    userId: string,
    intervals: readonly MembershipInterval[],
  ) {
    this.#remember(userKey(tenant, groupId, userId), { version, intervals });
  }

  #remember(key: string, fact: Fact): void {
    // A caller that read an older version (a slow answer) never replaces a newer fact.
    const known = this.#facts.peek(key);
    if (known === undefined || known.version <= fact.version) this.#facts.set(key, fact);
  }
}

const countKey = (tenant: string, groupId: string, at: number) =>
  `${tenant}\u0000${groupId}\u0000n\u0000${at}`;
const userKey = (tenant: string, groupId: string, userId: string) =>
  `${tenant}\u0000${groupId}\u0000u\u0000${userId}`;
