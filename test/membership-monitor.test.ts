import { afterEach, describe, expect, it } from "vitest";
import { MembershipMonitor } from "../src/domain/membership-monitor.js";
import type { ReceiptStore } from "../src/store/receipt-store.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "../src/store/sqlite/sqlite-receipt-store.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";

const tick = 100;
const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A real store whose membership reads are counted, and can be made to fail. */
function countingStore(): { store: ReceiptStore; reads: string[]; failing: { on: boolean } } {
  const db = openSqliteDatabase(":memory:");
  const inner = new SqliteReceiptStore(db, new SqliteWriteBatcher(db));
  const reads: string[] = [];
  const failing = { on: false };
  const store = new Proxy(inner, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      if (property !== "latestMemberships") return value.bind(target);
      return async (tenant: string, groupId: string, userIds: readonly string[]) => {
        reads.push(`${groupId}:${[...userIds].sort().join(",")}`);
        if (failing.on) throw new Error("store down");
        return value.call(target, tenant, groupId, userIds);
      };
    },
  });
  return { store, reads, failing };
}

describe("MembershipMonitor", () => {
  let monitor: MembershipMonitor | undefined;
  afterEach(() => monitor?.close());

  it("reads each watched group once per interval for all its watchers, and tells only those who left", async () => {
    const { store, reads } = countingStore();
    await store.openMemberships("t", "g", ["alice", "bob"], 0);
    await store.openMemberships("t", "h", ["alice"], 0);
    monitor = new MembershipMonitor({ store, intervalMs: tick });
    const left: string[] = [];
    // Five streams of two users on g (one of them also on h), one on h.
    for (const [i, [user, groups]] of (
      [
        ["alice", ["g"]],
        ["alice", ["g", "h"]],
        ["alice", ["g"]],
        ["bob", ["g"]],
        ["bob", ["g"]],
        ["alice", ["h"]],
      ] as const
    ).entries()) {
      monitor.follow("t", groups, user, (groupId) => left.push(`${i}:${groupId}`));
    }
    expect(monitor.groupCount).toBe(2);
    await wait(tick * 3.5);
    const sweeps = reads.filter((read) => read.startsWith("g:")).length;
    expect(sweeps).toBeGreaterThanOrEqual(2);
    // One read per group per sweep, whatever the number of streams.
    expect(reads.filter((read) => read.startsWith("h:")).length).toBe(sweeps);
    expect(new Set(reads)).toEqual(new Set(["g:alice,bob", "h:alice"]));
    expect(left).toEqual([]);

    // Bob leaves g (as another instance would record it): his two streams are told, once each.
    await store.closeMemberships("t", "g", ["bob"], 1);
    await wait(tick * 2.5);
    expect(left.sort()).toEqual(["3:g", "4:g"]);
  });

  it("checks a group at once on recheck, keeps streams while the store fails, and stops when nobody watches", async () => {
    const { store, reads, failing } = countingStore();
    await store.openMemberships("t", "g", ["alice"], 0);
    monitor = new MembershipMonitor({ store, intervalMs: 60_000 });
    const left: string[] = [];
    const stop = monitor.follow("t", ["g"], "alice", (groupId) => left.push(groupId));

    failing.on = true;
    await store.closeMemberships("t", "g", ["alice"], 1);
    await monitor.recheck("t", "g");
    expect(reads).toHaveLength(1);
    expect(left).toEqual([]);

    failing.on = false;
    await monitor.recheck("t", "g");
    expect(left).toEqual(["g"]);

    stop();
    expect(monitor.groupCount).toBe(0);
    await monitor.recheck("t", "g");
    expect(reads).toHaveLength(2);
  });
});
