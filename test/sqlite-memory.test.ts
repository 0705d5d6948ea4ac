import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { afterEach, describe, expect, it } from "vitest";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "../src/store/sqlite/sqlite-receipt-store.js";
import { lookAgainFromNow } from "../src/store/sqlite/sqlite-row-changes.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";

/**
 * The embedded store keeps the membership facts it read (audience sizes, a user's intervals)
 * and the tracked messages it read, and drops them the moment their rows change: these tests
 * fail when the store answers from memory after a change, and when it reads the same facts
 * again without one.
 */

/** The connection, counting the rows statements read, and PRAGMAs apart. */
function countingConnection(db: DatabaseSync): {
  db: DatabaseSync;
  reads: () => number;
  pragmas: () => number;
} {
  let reads = 0;
  let pragmas = 0;
  const counted = (statement: StatementSync, sql: string) =>
    new Proxy(statement, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property, target);
        if (typeof value !== "function") return value;
        if (property === "get" || property === "all") {
          const pragma = sql.trimStart().startsWith("PRAGMA");
          return (...args: unknown[]) => {
            if (pragma) pragmas += 1;
            else reads += 1;
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        return (value as (...a: unknown[]) => unknown).bind(target);
      },
    });
  const proxy = new Proxy(db, {
    get(target, property) {
      if (property === "prepare") return (sql: string) => counted(target.prepare(sql), sql);
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? (value as () => unknown).bind(target) : value;
    },
  });
  return { db: proxy, reads: () => reads, pragmas: () => pragmas };
}

const tenant = "t";
const group = "g";
const sentAt = 1_000_000;
/** A tracked message of the group. */
const message = (messageId: string) => ({
  conversationId: group,
  conversationType: "group" as const,
  messageId,
  senderId: "sender",
  sentAt,
  receiverId: "",
});
const probes = [
  { userId: "sender", at: sentAt },
  { userId: "sender", at: sentAt + 10 },
];

describe("what the embedded store keeps in memory", () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  function open(path = ":memory:") {
    const raw = openSqliteDatabase(path);
    const { db, reads, pragmas } = countingConnection(raw);
    const store = new SqliteReceiptStore(db, new SqliteWriteBatcher(db));
    cleanups.push(() => {
      if (raw.isOpen) raw.close();
    });
    return { raw, db, store, reads, pragmas };
  }

  /** Two connections, each with its store, to one database file. */
  function twoConnections() {
    const dir = mkdtempSync(join(tmpdir(), "receipts-memory-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "receipts.db");
    return { store: open(path).store, other: open(path) };
  }

  it("answers the same audience sizes again without reading the store", async () => {
    const { store, reads } = open();
    await store.openMemberships(tenant, group, ["sender", "a", "b"], sentAt - 100);
    const first = await store.membershipAt(tenant, group, probes);
    const before = reads();
    const again = await store.membershipAt(tenant, group, probes);
    expect(again).toEqual(first);
    expect(first).toEqual([
      { memberCount: 3, wasMember: true },
      { memberCount: 3, wasMember: true },
    ]);
    expect(reads()).toBe(before);
    expect(await store.wasMemberAt(tenant, group, "a", [sentAt])).toEqual([true]);
    expect(await store.memberCountAt(tenant, group, sentAt)).toBe(3);
  });

  it("sees every change made through the store at once: joins, backdated joins, removals", async () => {
    const { store } = open();
    await store.openMemberships(tenant, group, ["sender", "a"], sentAt - 100);
    expect(await store.membershipAt(tenant, group, probes)).toEqual([
      { memberCount: 2, wasMember: true },
      { memberCount: 2, wasMember: true },
    ]);
    // Joined between the two times: counted at the later one only.
    await store.openMemberships(tenant, group, ["b"], sentAt + 5);
    expect((await store.membershipAt(tenant, group, probes)).map((m) => m.memberCount)).toEqual([
      2, 3,
    ]);
    // A backdated join, before both.
    await store.openMemberships(tenant, group, ["c"], sentAt - 50);
    expect((await store.membershipAt(tenant, group, probes)).map((m) => m.memberCount)).toEqual([
      3, 4,
    ]);
    await store.closeMemberships(tenant, group, ["sender"], sentAt + 1);
    expect(await store.membershipAt(tenant, group, probes)).toEqual([
      { memberCount: 3, wasMember: true },
      { memberCount: 3, wasMember: false },
    ]);
    expect(await store.wasMemberAt(tenant, group, "sender", [sentAt, sentAt + 10])).toEqual([
      true,
      false,
    ]);
  });

  it("sees rows changed by any statement on the connection, not only the store's own", async () => {
    const { raw, store } = open();
    await store.openMemberships(tenant, group, ["sender", "a"], sentAt - 100);
    expect(await store.memberCountAt(tenant, group, sentAt)).toBe(2);
    expect(await store.wasMemberAt(tenant, group, "a", [sentAt])).toEqual([true]);
    // As an erasure would: the rows go, and the running total with them.
    raw.exec(`DELETE FROM memberships WHERE user_id = 'a'`);
    raw.exec(`UPDATE groups SET member_count = member_count - 1`);
    expect(await store.memberCountAt(tenant, group, sentAt)).toBe(1);
    expect(await store.wasMemberAt(tenant, group, "a", [sentAt])).toEqual([false]);
  });

  it("sees a change committed by another connection to the same file", async () => {
    const { store, other } = twoConnections();
    await store.openMemberships(tenant, group, ["sender"], sentAt - 100);
    expect(await store.membershipAt(tenant, group, probes)).toEqual([
      { memberCount: 1, wasMember: true },
      { memberCount: 1, wasMember: true },
    ]);
    await other.store.closeMemberships(tenant, group, ["sender"], sentAt - 10);
    expect(await store.membershipAt(tenant, group, probes)).toEqual([
      { memberCount: 0, wasMember: false },
      { memberCount: 0, wasMember: false },
    ]);
  });

  it("keeps two stores on one connection exact", async () => {
    const raw = openSqliteDatabase(":memory:");
    cleanups.push(() => raw.close());
    const writes = new SqliteWriteBatcher(raw);
    const first = new SqliteReceiptStore(raw, writes);
    const second = new SqliteReceiptStore(raw, writes);
    await first.openMemberships(tenant, group, ["sender"], sentAt - 100);
    expect(await first.memberCountAt(tenant, group, sentAt)).toBe(1);
    expect(await second.memberCountAt(tenant, group, sentAt)).toBe(1);
    await second.openMemberships(tenant, group, ["a"], sentAt - 100);
    expect(await first.memberCountAt(tenant, group, sentAt)).toBe(2);
    expect(await second.memberCountAt(tenant, group, sentAt)).toBe(2);
  });

  describe("tracked messages", () => {
    it("are read once, and receipts (read counts) do not make the store read them again", async () => {
      const { store, reads } = open();
      await store.insertMessages(tenant, [message("m1"), message("m2")]);
      expect([...(await store.getMessages(tenant, ["m1", "m2"])).keys()]).toEqual(["m1", "m2"]);
      await store.insertReceipts(tenant, "reader", [
        { message: message("m1"), readAt: sentAt + 1 },
      ]);
      const before = reads();
      expect((await store.getMessages(tenant, ["m1", "m2"])).get("m1")).toEqual(message("m1"));
      expect(reads()).toBe(before);
    });

    it("are not remembered as missing: a message tracked after a miss is found", async () => {
      const { store } = open();
      expect((await store.getMessages(tenant, ["m1"])).size).toBe(0);
      await store.insertMessages(tenant, [message("m1")]);
      expect((await store.getMessages(tenant, ["m1"])).get("m1")).toEqual(message("m1"));
    });

    it("are dropped when any statement deletes or rewrites their row", async () => {
      const { raw, store } = open();
      await store.insertMessages(tenant, [message("m1"), message("m2")]);
      await store.getMessages(tenant, ["m1", "m2"]);
      raw.exec(`DELETE FROM messages WHERE message_id = 'm1'`);
      raw.exec(`UPDATE messages SET sender_id = 'someone else' WHERE message_id = 'm2'`);
      const found = await store.getMessages(tenant, ["m1", "m2"]);
      expect(found.has("m1")).toBe(false);
      expect(found.get("m2")?.senderId).toBe("someone else");
    });

    it("are dropped when another connection to the same file commits", async () => {
      const { store, other } = twoConnections();
      await store.insertMessages(tenant, [message("m1")]);
      expect((await store.getMessages(tenant, ["m1"])).size).toBe(1);
      other.raw.exec(`DELETE FROM messages WHERE message_id = 'm1'`);
      // The next request arrives.
      lookAgainFromNow();
      expect((await store.getMessages(tenant, ["m1"])).size).toBe(0);
    });
  });
  describe("read counts", () => {
    const readBy = (store: SqliteReceiptStore, readerId: string, messageId: string) =>
      store.insertReceipts(tenant, readerId, [{ message: message(messageId), readAt: sentAt + 1 }]);
    const countsOf = async (store: SqliteReceiptStore, ...ids: string[]) =>
      Object.fromEntries(await store.readCounts(tenant, ids.map(message)));

    it("are read once, and answered again from memory until they change", async () => {
      const { store, reads } = open();
      await store.insertMessages(tenant, [message("m1"), message("m2")]);
      await readBy(store, "a", "m1");
      expect(await countsOf(store, "m1", "m2", "m1")).toEqual({ m1: 1, m2: 0 });
      const before = reads();
      expect(await countsOf(store, "m1", "m2")).toEqual({ m1: 1, m2: 0 });
      expect(reads()).toBe(before);
    });

    it("follow every receipt recorded or removed, by the store or any other statement", async () => {
      const { raw, store } = open();
      await store.insertMessages(tenant, [message("m1"), message("m2")]);
      expect(await countsOf(store, "m1", "m2")).toEqual({ m1: 0, m2: 0 });
      await readBy(store, "a", "m1");
      await readBy(store, "b", "m1");
      expect(await countsOf(store, "m1", "m2")).toEqual({ m1: 2, m2: 0 });
      // As an erasure would: the count changed by a statement of its own.
      raw.exec(`UPDATE messages SET read_count = read_count - 1 WHERE message_id = 'm1'`);
      expect(await countsOf(store, "m1", "m2")).toEqual({ m1: 1, m2: 0 });
      raw.exec(`DELETE FROM messages WHERE message_id = 'm2'`);
      await store.insertMessages(tenant, [message("m2")]);
      await readBy(store, "a", "m2");
      expect(await countsOf(store, "m1", "m2")).toEqual({ m1: 1, m2: 1 });
    });

    it("are not remembered as missing: a message tracked after a miss is counted", async () => {
      const { store } = open();
      expect(await countsOf(store, "m1")).toEqual({ m1: 0 });
      await store.insertMessages(tenant, [message("m1")]);
      await readBy(store, "a", "m1");
      expect(await countsOf(store, "m1")).toEqual({ m1: 1 });
    });

    it("are not remembered from inside a transaction that is then rolled back", async () => {
      const { raw, store } = open();
      await store.insertMessages(tenant, [message("m1")]);
      raw.exec("BEGIN");
      raw.exec(`UPDATE messages SET read_count = 7 WHERE message_id = 'm1'`);
      expect(await countsOf(store, "m1")).toEqual({ m1: 7 });
      raw.exec("ROLLBACK");
      expect(await countsOf(store, "m1")).toEqual({ m1: 0 });
    });

    it("are dropped when another connection to the same file commits", async () => {
      const { store, other } = twoConnections();
      await store.insertMessages(tenant, [message("m1")]);
      expect(await countsOf(store, "m1")).toEqual({ m1: 0 });
      await readBy(other.store, "a", "m1");
      expect(await countsOf(store, "m1")).toEqual({ m1: 1 });
    });
  });

  describe("another connection's commits", () => {
    const tracked = message("m1");
    const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

    it("are looked for once per turn of the event loop by all the memories of a connection", async () => {
      const { store, pragmas } = open();
      await store.openMemberships(tenant, group, ["sender", "a"], sentAt - 100);
      await store.insertMessages(tenant, [tracked]);
      await nextTurn();
      const before = pragmas();
      // GetReceipts' reads, one after another: messages, then audience size and read counts.
      expect((await store.getMessages(tenant, ["m1"])).size).toBe(1);
      expect(await store.memberCountAt(tenant, group, sentAt)).toBe(2);
      expect((await store.readCounts(tenant, [tracked])).get("m1")).toBe(0);
      expect(pragmas() - before).toBe(1);
      await nextTurn();
      await store.memberCountAt(tenant, group, sentAt);
      expect(pragmas() - before).toBe(2);
    });

    it("are seen by the reads of a request that arrives in the same turn as the last look", async () => {
      const { store, other } = twoConnections();
      await store.insertMessages(tenant, [tracked]);
      expect((await store.getMessages(tenant, ["m1"])).size).toBe(1);
      // Committed elsewhere after that look; then a request arrives, still in this turn.
      other.raw.exec(`DELETE FROM messages WHERE message_id = 'm1'`);
      expect((await store.getMessages(tenant, ["m1"])).size).toBe(1);
      lookAgainFromNow();
      expect((await store.getMessages(tenant, ["m1"])).size).toBe(0);
    });

    it("are seen in the next turn without a request", async () => {
      const { store, other } = twoConnections();
      await store.insertMessages(tenant, [tracked]);
      expect((await store.getMessages(tenant, ["m1"])).size).toBe(1);
      other.raw.exec(`DELETE FROM messages WHERE message_id = 'm1'`);
      await nextTurn();
      expect((await store.getMessages(tenant, ["m1"])).size).toBe(0);
    });
  });
});
