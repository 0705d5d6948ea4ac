import { SqliteChangeFeed } from "../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "../src/store/sqlite/sqlite-receipt-store.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";
import { describeLifecycleContract } from "./deletion-contract.js";
import { describePrivacyContract } from "./privacy-contract.js";
import { describeReadMembersBatchContract } from "./read-members-batch-contract.js";
import { describeReceiptContract } from "./store-contract.js";
import { describeUserDataContract } from "./user-data-contract.js";

const openSqliteBackend = async () => {
  const db = openSqliteDatabase(":memory:");
  const writes = new SqliteWriteBatcher(db);
  const store = new SqliteReceiptStore(db, writes);
  const feed = new SqliteChangeFeed(db, writes, { retentionMs: 86_400_000 });
  return {
    store,
    feed,
    prune: () => store.retention.prune(),
    async close() {
      await feed.close();
      await store.close();
    },
  };
};

describeReceiptContract("the embedded SQLite store", openSqliteBackend);
describeReadMembersBatchContract("the embedded SQLite store", openSqliteBackend);
describeUserDataContract("the embedded SQLite store", openSqliteBackend, {
  largeGroup: { members: 100_000, messages: 10_000 },
});
describePrivacyContract("the embedded SQLite store", openSqliteBackend);
describeLifecycleContract("the embedded SQLite store", openSqliteBackend);
