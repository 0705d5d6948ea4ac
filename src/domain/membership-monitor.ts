import type { ReceiptStore } from "../store/receipt-store.js";

/** Groups read at once by a sweep. */
const sweepConcurrency = 16;

interface Follower {
  readonly userId: string;
  readonly onLeft: (groupId: string) => void;
}

interface WatchedGroup {
  readonly tenant: string;
  readonly groupId: string;
  readonly followers: Set<Follower>;
}

/**
 * Tells open streams when their user is no longer a current member of a group they watch.
 * Membership can change on any instance (a shared store), so each watched group is re-read
 * every `intervalMs`: one store read per (tenant, group) for all its watching users, however
 * many streams they hold. A removal made through this instance is checked at once (`recheck`).
 * A read that fails keeps the streams: a store outage is not a lost membership.
 */
export class MembershipMonitor {
  readonly #store: ReceiptStore;
  readonly #intervalMs: number;
  readonly #groups = new Map<string, WatchedGroup>();
  #timer: NodeJS.Timeout | undefined;
  #sweeping = false;

  constructor(deps: { readonly store: ReceiptStore; readonly intervalMs: number }) {
    this.#store = deps.store;
    this.#intervalMs = deps.intervalMs;
  }

  /** Groups being followed now (for tests and metrics). */
  get groupCount(): number {
    return this.#groups.size;
  }

  /** Calls `onLeft` (once) when `userId` stops being a current member of a group; until stop. */
  follow(
    tenant: string,
    groupIds: readonly string[],
    userId: string,
    onLeft: (groupId: string) => void,
  ): () => void {
    let left = false;
    const follower: Follower = {
      userId,
      onLeft: (groupId) => {
        if (left) return;
        left = true;
        onLeft(groupId);
      },
    };
    const keys = [...new Set(groupIds)].map((groupId) => {
      const key = `${tenant}\u0000${groupId}`;
      let group = this.#groups.get(key);
      if (group === undefined) {
        group = { tenant, groupId, followers: new Set() };
        this.#groups.set(key, group);
      }
      group.followers.add(follower);
      return key;
    });
    this.#timer ??= setInterval(() => void this.#sweep(), this.#intervalMs).unref();
    return () => {
      for (const key of keys) {
        const group = this.#groups.get(key);
        group?.followers.delete(follower);
        if (group?.followers.size === 0) this.#groups.delete(key);
      }
      if (this.#groups.size === 0) this.close();
    };
  }

  /** Re-reads one group now: its membership just changed through this instance. */
  async recheck(tenant: string, groupId: string): Promise<void> {
    const group = this.#groups.get(`${tenant}\u0000${groupId}`);
    if (group !== undefined) await this.#check(group);
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #sweep(): Promise<void> {
    // A sweep slower than the interval is not doubled up: the next tick waits for it.
    if (this.#sweeping) return;
    this.#sweeping = true;
    try {
      const groups = [...this.#groups.values()];
      for (let i = 0; i < groups.length; i += sweepConcurrency) {
        await Promise.all(groups.slice(i, i + sweepConcurrency).map((g) => this.#check(g)));
      }
    } finally {
      this.#sweeping = false;
    }
  }

  async #check(group: WatchedGroup): Promise<void> {
    const userIds = [...new Set([...group.followers].map((f) => f.userId))];
    if (userIds.length === 0) return;
    let latest: Awaited<ReturnType<ReceiptStore["latestMemberships"]>>;
    try {
      latest = await this.#store.latestMemberships(group.tenant, group.groupId, userIds);
    } catch {
      return;
    }
    for (const follower of [...group.followers]) {
      const interval = latest.get(follower.userId);
      if (interval === undefined || interval.leftAt !== undefined) follower.onLeft(group.groupId);
    }
  }
}
