import { describe, expect, it } from "vitest";
import { serviceCaller } from "../src/domain/caller.js";
import { MembershipService } from "../src/domain/membership-service.js";
import { ReceiptService } from "../src/domain/receipt-service.js";
import { SqliteChangeFeed } from "../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "../src/store/sqlite/sqlite-receipt-store.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";
import { groupMessage, users } from "./support/fixtures.js";

const day = 86_400_000;

/** The embedded store's retention job, on a fake clock: exactly what is older goes, in bounded chunks. */
describe("retention on the embedded store", () => {
  it("removes exactly the messages sent at or before now minus the retention, with all their rows, a chunk at a time", async () => {
    let now = Date.UTC(2026, 5, 1);
    const clock = () => now;
    const db = openSqliteDatabase(":memory:");
    const writes = new SqliteWriteBatcher(db);
    const store = new SqliteReceiptStore(db, writes, {
      clock,
      pruneEveryMs: 0,
      pruneChunkRows: 10,
    });
    const feed = new SqliteChangeFeed(db, writes, { retentionMs: 30 * day, clock });
    const deps = { store, feed, clock, retentionOf: () => day };
    const receipts = new ReceiptService(deps);
    const membership = new MembershipService(deps);
    const readers = users("r", 12);
    await membership.addMembers("t", serviceCaller, {
      groupId: "g",
      userIds: ["s", ...readers],
      joinedAt: 0,
    });
    const start = now;
    // Sent one millisecond apart, just now; every reader reads all of them.
    const ids = users("m", 6);
    await receipts.trackMessages(
      "t",
      serviceCaller,
      ids.map((id, i) => groupMessage(id, "g", "s", start - 5 + i)),
    );
    for (const reader of readers) {
      await receipts.sendReceipts("t", serviceCaller, {
        conversationId: "g",
        readerId: reader,
        messageIds: ids,
      });
    }
    await receipts.markConversationRead("t", serviceCaller, {
      conversationId: "g",
      readerId: "r000000",
      readUpTo: start - 3,
    });
    await receipts.announcer.idle();

    const count = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
    const rows = () => ({
      messages: count("SELECT count(*) AS n FROM messages"),
      receipts: count("SELECT count(*) AS n FROM receipts"),
      logged: count(
        "SELECT count(*) AS n FROM change_log WHERE json_extract(payload, '$.kind') = 'receipt'",
      ),
      notes: count("SELECT count(*) AS n FROM horizon_sets"),
    });
    expect(rows()).toEqual({ messages: 6, receipts: 72, logged: 72, notes: 1 });

    // m000000..m000002 were sent at start-5..start-3: at or before now - retention one day later.
    now = start + day - 3;
    const transactions: number[] = [];
    const write = writes.write.bind(writes);
    writes.write = (work) =>
      write(() => {
        const value = work();
        if (typeof value === "number") transactions.push(value);
        return value;
      });
    await store.retention.prune();
    expect(rows()).toEqual({ messages: 3, receipts: 36, logged: 36, notes: 0 });
    // 3 messages + 36 receipts + 36 log entries + 1 note, never more than 10 rows a transaction.
    expect(transactions.reduce((a, b) => a + b, 0)).toBe(76);
    expect(Math.max(...transactions)).toBeLessThanOrEqual(10);
    expect(transactions.length).toBeGreaterThanOrEqual(8);

    const kept = await store.getMessages("t", ids);
    expect([...kept.keys()].sort()).toEqual(ids.slice(3));
    // Reads hide a message the moment it expires, before the job runs.
    now += 1;
    expect([...(await store.getMessages("t", ids)).keys()].sort()).toEqual(ids.slice(4));
    await receipts.announcer.close();
    await feed.close();
    await store.close();
  });
});
