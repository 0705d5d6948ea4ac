import { getHeapStatistics } from "node:v8";
import { describe, expect, it } from "vitest";
import { defaultMaxStreams, loadConfig } from "../src/config.js";
import {
  entriesOfMessage,
  pruneStatements,
  SqliteChangeFeed,
} from "../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "../src/store/sqlite/sqlite-receipt-store.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";
import { describeWatchContract } from "./watch-contract.js";

describeWatchContract("the embedded feed", async () => {
  const retentionMs = 3_600_000;
  let now = Date.now();
  const db = openSqliteDatabase(":memory:");
  const writes = new SqliteWriteBatcher(db);
  const feed = new SqliteChangeFeed(db, writes, { retentionMs, clock: () => now });
  return {
    store: new SqliteReceiptStore(db, writes),
    feed,
    aheadPosition: "999999",
    async expire() {
      now += 2 * retentionMs;
      await feed.prune();
    },
    async close() {
      await feed.close();
      db.close();
    },
  };
});

describe("removing a deleted or expired message's entries from the embedded change log", () => {
  it("finds them through the index by message, never by walking the tenant's log", () => {
    const db = openSqliteDatabase(":memory:");
    try {
      const sql = `DELETE FROM change_log WHERE (tenant, position) IN (${entriesOfMessage} LIMIT 10)`;
      const plan = (
        db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all({ tenant: "t", message: "m" }) as {
          detail: string;
        }[]
      ).map((row) => row.detail);
      expect(plan.some((d) => /USING COVERING INDEX change_log_by_message/.test(d))).toBe(true);
      for (const detail of plan.filter((d) => /\bchange_log\b/.test(d))) {
        expect(detail).toMatch(/change_log_by_message|PRIMARY KEY \(tenant=\? AND position=\?\)/);
      }
    } finally {
      db.close();
    }
  });
});

describe("pruning the embedded change log", () => {
  it("reads only the expired rows, through the age index", () => {
    const db = openSqliteDatabase(":memory:");
    try {
      for (const sql of Object.values(pruneStatements)) {
        const plan = (
          db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all({ cutoff: 0 }) as { detail: string }[]
        ).map((row) => row.detail);
        const onLog = plan.filter((detail) => /\b(change_log|announced)\b/.test(detail));
        expect(onLog.length).toBeGreaterThan(0);
        // Either an age index or a lookup by key, never a walk over the table.
        for (const detail of onLog) {
          expect(detail).toMatch(
            /USING (COVERING )?INDEX (change_log|announced)_by_age|USING PRIMARY KEY \(tenant=\? AND/,
          );
        }
      }
    } finally {
      db.close();
    }
  });

  it("drops every expired change over several chunks and marks the newest one dropped", async () => {
    const retentionMs = 60_000;
    let now = 1_000_000;
    const db = openSqliteDatabase(":memory:");
    const feed = new SqliteChangeFeed(db, new SqliteWriteBatcher(db), {
      retentionMs,
      clock: () => now,
    });
    try {
      const change = (i: number) => ({
        kind: "horizon" as const,
        conversationId: "c",
        readerId: `u${i}`,
        readUpTo: i,
      });
      const old = await feed.publish(
        "t",
        Array.from({ length: 4_500 }, (_, i) => change(i)),
      );
      now += 2 * retentionMs;
      const kept = await feed.publish("t", [change(-1)]);
      await feed.prune();
      const lastOld = old.at(-1)?.position as string;
      await expect(feed.readAfter("t", String(Number(lastOld) - 1), 10)).rejects.toThrow(
        /no longer kept/,
      );
      // The newest dropped position is still a valid token: nothing after it was lost.
      expect(await feed.readAfter("t", lastOld, 10)).toEqual(kept);
      const { rows } = db.prepare("SELECT count(*) AS rows FROM change_log").get() as {
        rows: number;
      };
      expect(rows).toBe(1);
    } finally {
      await feed.close();
      db.close();
    }
  });
});

describe("RECEIPTS_MAX_STREAMS", () => {
  it("defaults to what half of the heap limit holds, and can be set", () => {
    const heapLimit = getHeapStatistics().heap_size_limit;
    const byDefault = loadConfig({}).watch.maxStreams;
    expect(byDefault).toBe(defaultMaxStreams());
    // About 40 KB per idle stream, in half the heap.
    expect(byDefault * 40 * 1024).toBeLessThanOrEqual(heapLimit / 2);
    expect((byDefault + 1) * 40 * 1024).toBeGreaterThan(heapLimit / 2);
    expect(loadConfig({ RECEIPTS_MAX_STREAMS: "250" }).watch.maxStreams).toBe(250);
  });
});
