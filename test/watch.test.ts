import { SqliteChangeFeed } from "../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "../src/store/sqlite/sqlite-receipt-store.js";
import { describeWatchContract } from "./watch-contract.js";

describeWatchContract("the embedded feed", async () => {
  const retentionMs = 3_600_000;
  let now = Date.now();
  const db = openSqliteDatabase(":memory:");
  const feed = new SqliteChangeFeed(db, { retentionMs, clock: () => now });
  return {
    store: new SqliteReceiptStore(db),
    feed,
    aheadPosition: "999999",
    async expire() {
      now += 2 * retentionMs;
      feed.prune();
    },
    async close() {
      await feed.close();
      db.close();
    },
  };
});
