import { describe, expect, it } from "vitest";
import { serviceCaller } from "../src/domain/caller.js";
import { type ErasableStore, type ErasureStep, UserErasure } from "../src/domain/user-erasure.js";
import type { Chunk, Cursor, ErasureRecord, UserDataStore } from "../src/store/user-data-store.js";

type RecordStore = Pick<UserDataStore, "erasureOf" | "saveErasure">;

/** Erasure records in memory, compare-and-set on the version like both stores. */
function records(): RecordStore & { map: Map<string, ErasureRecord> } {
  const map = new Map<string, ErasureRecord>();
  return {
    map,
    async erasureOf(tenant, userId) {
      return map.get(`${tenant}/${userId}`);
    },
    async saveErasure(tenant, userId, record, expectedVersion) {
      if (map.get(`${tenant}/${userId}`)?.version !== expectedVersion) return false;
      map.set(`${tenant}/${userId}`, record);
      return true;
    },
  };
}

/** A step over `rows` rows of one kind, `limit` at a time, recording the cursors it is given. */
function rowsStep(name: string, rows: number, cursors: Cursor[] = []): ErasureStep {
  let left = rows;
  return {
    name,
    async eraseChunk(_tenant, _userId, cursor, limit): Promise<Chunk> {
      cursors.push(cursor);
      const removed = Math.min(left, limit);
      left -= removed;
      return { removed, cursor: left > 0 ? String(rows - left) : undefined };
    },
  };
}

const store = (r: RecordStore) => r as unknown as ErasableStore;

describe("UserErasure, the runner of the erasure's steps", () => {
  it("runs every step of its list in order, a new one included, and names each in the answer", async () => {
    const r = records();
    const steps = [rowsStep("receipts", 5), rowsStep("settings", 2), rowsStep("memberships", 1)];
    const erasure = new UserErasure({ store: store(r), steps, chunkSize: 2, callBudgetMs: 60_000 });
    expect(await erasure.eraseUser("t", serviceCaller, { userId: "u" })).toMatchObject({
      done: true,
      step: "",
      removed: { receipts: 5, settings: 2, memberships: 1 },
    });
  });

  it("goes on from the saved step and cursor in a later call", async () => {
    const r = records();
    const cursors: Cursor[] = [];
    const steps = [rowsStep("receipts", 5, cursors)];
    const erasure = new UserErasure({ store: store(r), steps, chunkSize: 2, callBudgetMs: 0 });
    expect(await erasure.eraseUser("t", serviceCaller, { userId: "u" })).toMatchObject({
      done: false,
      step: "receipts",
      removed: { receipts: 2 },
    });
    await erasure.eraseUser("t", serviceCaller, { userId: "u" });
    expect((await erasure.eraseUser("t", serviceCaller, { userId: "u" })).done).toBe(true);
    expect(cursors).toEqual([undefined, "2", "4"]);
  });

  it("starts the pass over, without a cursor, from a step no longer in its list", async () => {
    const r = records();
    r.map.set("t/u", {
      state: "erasing",
      startedAt: 1,
      step: "renamed",
      cursor: "conversation-7",
      removed: { receipts: 3 },
      version: 4,
    });
    const cursors: Cursor[] = [];
    const erasure = new UserErasure({ store: store(r), steps: [rowsStep("receipts", 1, cursors)] });
    expect(await erasure.eraseUser("t", serviceCaller, { userId: "u" })).toMatchObject({
      done: true,
      removed: { receipts: 4 },
    });
    expect(cursors).toEqual([undefined]);
  });

  it("drops the counts of a chunk another call recorded first, and goes on from its record", async () => {
    const r = records();
    let raced = false;
    const racing: RecordStore = {
      erasureOf: r.erasureOf,
      async saveErasure(tenant, userId, record, expected) {
        // Another call saves its progress first (it counted 7, a marker).
        if (!raced && record.removed.receipts === 2) {
          raced = true;
          await r.saveErasure(tenant, userId, { ...record, removed: { receipts: 7 } }, expected);
        }
        return r.saveErasure(tenant, userId, record, expected);
      },
    };
    const erasure = new UserErasure({
      store: store(racing),
      steps: [rowsStep("receipts", 2)],
      chunkSize: 2,
    });
    expect(await erasure.eraseUser("t", serviceCaller, { userId: "u" })).toMatchObject({
      done: true,
      removed: { receipts: 7 },
    });
    expect(r.map.get("t/u")?.removed).toEqual({ receipts: 7 });
  });
});
