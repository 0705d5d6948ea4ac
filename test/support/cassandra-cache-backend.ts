import type { Client } from "cassandra-driver";
import { CassandraReceiptStore } from "../../src/store/cassandra/cassandra-receipt-store.js";
import type { RedisClient } from "../../src/store/redis/redis-connection.js";
import { RedisReadCountCache } from "../../src/store/redis/redis-read-count-cache.js";
import { SqliteChangeFeed } from "../../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../../src/store/sqlite/sqlite-database.js";
import { SqliteWriteBatcher } from "../../src/store/sqlite/sqlite-write-batcher.js";

/** Cassandra with the read-count cache on `redis` and an in-memory feed, for the contract suites. */
export function cassandraCacheBackend(
  client: Client,
  keyspace: string,
  redis: RedisClient,
  keyPrefix: string,
) {
  const cache = new RedisReadCountCache(redis, { keyPrefix, ttlMs: 60_000 });
  const store = new CassandraReceiptStore(client, { keyspace, cache });
  const db = openSqliteDatabase(":memory:");
  const feed = new SqliteChangeFeed(db, new SqliteWriteBatcher(db), { retentionMs: 86_400_000 });
  return {
    store,
    feed,
    async close() {
      await feed.close();
      await cache.close();
      redis.disconnect();
      db.close();
    },
  };
}
