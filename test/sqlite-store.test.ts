import { SqliteChangeFeed } from "../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "../src/store/sqlite/sqlite-receipt-store.js";
import { describeReceiptContract } from "./store-contract.js";

describeReceiptContract("the embedded SQLite store", async () => {
  const db = openSqliteDatabase(":memory:");
  const store = new SqliteReceiptStore(db);
  const feed = new SqliteChangeFeed(db, { retentionMs: 86_400_000 });
  return {
    store,
    feed,
    async close() {
      await feed.close();
      await store.close();
    },
  };
});
