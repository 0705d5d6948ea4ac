/**
 * Bytes on disk per receipt, and a soak showing them flat under a tenant's retention.
 *
 *   npm run build && node scripts/measure-retention.ts bytes sqlite|cassandra [receipts=50000]
 *   npm run build && node scripts/measure-retention.ts soak sqlite|cassandra [seconds=60] [retention=10]
 *
 * `bytes` fills one group's messages with receipts through the domain (so the change log and
 * outbox work as in service) and divides the growth on disk by the receipts written: the SQLite
 * file after a WAL checkpoint, or the Cassandra keyspace's data directory (found through
 * system_views.settings) once its memtables are flushed. No nodetool: the throwaway keyspace's
 * tables get memtable_flush_period_in_ms = 1000, and the size is read after a few flushes.
 * `soak` sends about 1,000 receipts a second to fresh messages with a retention of `retention`
 * seconds and prints the bytes on disk every 5 s: they grow for one retention period, then stay
 * flat. The Cassandra soak's keyspace has gc_grace_seconds = 0 so that compaction may drop
 * expired rows at once (docs/operations.md says what to set in production).
 * Runs directly on Node 24 (type stripping); the service is imported from dist/.
 */

import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const root = join(import.meta.dirname, "..");
const fromDist = async <T>(path: string): Promise<T> =>
  (await import(pathToFileURL(join(root, "dist", path)).href)) as T;

const { ReceiptService } = await fromDist<typeof import("../src/domain/receipt-service.js")>(
  "src/domain/receipt-service.js",
);
const { serviceCaller } =
  await fromDist<typeof import("../src/domain/caller.js")>("src/domain/caller.js");
const { openSqliteDatabase } = await fromDist<
  typeof import("../src/store/sqlite/sqlite-database.js")
>("src/store/sqlite/sqlite-database.js");
const { SqliteWriteBatcher } = await fromDist<
  typeof import("../src/store/sqlite/sqlite-write-batcher.js")
>("src/store/sqlite/sqlite-write-batcher.js");
const { SqliteReceiptStore } = await fromDist<
  typeof import("../src/store/sqlite/sqlite-receipt-store.js")
>("src/store/sqlite/sqlite-receipt-store.js");
const { SqliteChangeFeed } = await fromDist<
  typeof import("../src/store/sqlite/sqlite-change-feed.js")
>("src/store/sqlite/sqlite-change-feed.js");

type Store = import("../src/store/receipt-store.js").ReceiptStore;
type Feed = import("../src/store/change-feed.js").ChangeFeed;

interface Backend {
  readonly store: Store;
  readonly feed: Feed;
  /** Bytes the store holds on disk now (after making what was written durable and visible). */
  bytesOnDisk(): Promise<number>;
  /** SQLite: the bytes once the change log is emptied and the file vacuumed (receipts alone). */
  bytesWithoutLog?(): Promise<number>;
  close(): Promise<void>;
}

const [mode = "bytes", storeName = "sqlite", arg1, arg2] = process.argv.slice(2);
const tenant = "measure";
const sender = randomUUID();
const group = randomUUID();
// UUID-sized ids, as messaging backends use: short ones compress (and pack) far better.
const readers = Array.from({ length: 100 }, () => randomUUID());

async function sqliteBackend(retentionMs: number | undefined): Promise<Backend> {
  const dir = mkdtempSync(join(tmpdir(), "receipts-measure-"));
  const path = join(dir, "receipts.db");
  const db = openSqliteDatabase(path);
  const writes = new SqliteWriteBatcher(db);
  const store = new SqliteReceiptStore(db, writes, { pruneEveryMs: retentionMs ? 1_000 : 0 });
  const feed = new SqliteChangeFeed(db, writes, { retentionMs: retentionMs ?? 86_400_000 });
  const bytesOnDisk = async () => {
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    const size = (file: string) => {
      try {
        return statSync(file).size;
      } catch {
        return 0;
      }
    };
    return size(path) + size(`${path}-wal`);
  };
  return {
    store,
    feed,
    bytesOnDisk,
    async bytesWithoutLog() {
      db.exec("DELETE FROM change_log; DELETE FROM announced; DELETE FROM outbox; VACUUM");
      return bytesOnDisk();
    },
    async close() {
      await feed.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function cassandraBackend(soak: boolean): Promise<Backend> {
  const { createCassandraClient } = await fromDist<
    typeof import("../src/store/cassandra/cassandra-client.js")
  >("src/store/cassandra/cassandra-client.js");
  const { applyCassandraSchema } = await fromDist<
    typeof import("../src/store/cassandra/cassandra-schema.js")
  >("src/store/cassandra/cassandra-schema.js");
  const { CassandraReceiptStore } = await fromDist<
    typeof import("../src/store/cassandra/cassandra-receipt-store.js")
  >("src/store/cassandra/cassandra-receipt-store.js");
  const client = createCassandraClient({
    contactPoints: (process.env.RECEIPTS_CASSANDRA_CONTACT_POINTS ?? "127.0.0.1:9042").split(","),
    localDataCenter: process.env.RECEIPTS_CASSANDRA_LOCAL_DC ?? "datacenter1",
  });
  const keyspace = `receipts_measure_${randomBytes(4).toString("hex")}`;
  await applyCassandraSchema(client, {
    keyspace,
    replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}",
  });
  const tables = await client.execute(
    "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
    [keyspace],
  );
  for (const row of tables.rows) {
    const options = soak
      ? "memtable_flush_period_in_ms = 1000 AND gc_grace_seconds = 0"
      : "memtable_flush_period_in_ms = 1000";
    await client.execute(`ALTER TABLE ${keyspace}.${row.get("table_name")} WITH ${options}`);
  }
  const setting = await client.execute(
    "SELECT value FROM system_views.settings WHERE name = 'data_file_directories'",
  );
  const dataDirs = String(setting.first()?.get("value") ?? "")
    .replace(/[[\]]/g, "")
    .split(",")
    .map((dir) => dir.trim())
    .filter((dir) => dir !== "");
  const store = new CassandraReceiptStore(client, { keyspace });
  const db = openSqliteDatabase(":memory:");
  const feed = new SqliteChangeFeed(db, new SqliteWriteBatcher(db), { retentionMs: 86_400_000 });
  return {
    store,
    feed,
    async bytesOnDisk() {
      // Three flush periods: every memtable of the keyspace is in an SSTable by then.
      await new Promise((resolve) => setTimeout(resolve, 3_500));
      return dataDirs.reduce((sum, dir) => sum + directorySize(join(dir, keyspace)), 0);
    },
    async close() {
      await feed.close();
      await client.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`).catch(() => undefined);
      await client.shutdown();
    },
  };
}

function directorySize(dir: string): number {
  let total = 0;
  let entries: import("node:fs").Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    // Snapshots (a DROP's auto-snapshot, backups) are not the live data.
    if (entry.isDirectory()) total += entry.name === "snapshots" ? 0 : directorySize(path);
    else total += statSync(path).size;
  }
  return total;
}

async function open(retentionMs: number | undefined, soak: boolean): Promise<Backend> {
  if (storeName === "cassandra") return cassandraBackend(soak);
  if (storeName === "sqlite") return sqliteBackend(retentionMs);
  throw new Error(`unknown store ${storeName}: sqlite or cassandra`);
}

/** Tracks `count` group messages sent now and has every reader read them; returns the receipts. */
async function readBatch(
  service: InstanceType<typeof ReceiptService>,
  prefix: string,
  count: number,
): Promise<number> {
  const now = Date.now();
  const ids = Array.from({ length: count }, () => `${prefix}-${randomUUID()}`);
  await service.trackMessages(
    tenant,
    serviceCaller,
    ids.map((messageId, i) => ({
      conversationId: group,
      conversationType: "group" as const,
      messageId,
      senderId: sender,
      sentAt: now - count + i,
      receiverId: "",
    })),
  );
  // Ten readers at a time: enough to keep the store busy, without queueing thousands of requests.
  for (let i = 0; i < readers.length; i += 10) {
    await Promise.all(
      readers.slice(i, i + 10).map((readerId) =>
        service.sendReceipts(tenant, serviceCaller, {
          conversationId: group,
          readerId,
          messageIds: ids,
        }),
      ),
    );
  }
  return ids.length * readers.length;
}

async function setUp(backend: Backend): Promise<void> {
  await backend.store.openMemberships(tenant, group, [sender, ...readers], 0);
}

async function measureBytes(): Promise<void> {
  const target = Number(arg1 ?? 50_000);
  const backend = await open(undefined, false);
  const service = new ReceiptService({ store: backend.store, feed: backend.feed });
  try {
    await measureBytesOn(backend, service, target);
  } finally {
    await service.announcer.close();
    await backend.close();
  }
}

async function measureBytesOn(
  backend: Backend,
  service: InstanceType<typeof ReceiptService>,
  target: number,
): Promise<void> {
  await setUp(backend);
  await readBatch(service, "warm", 10); // the schema's first pages and the group, not receipts
  await service.announcer.idle();
  const before = await backend.bytesOnDisk();
  let receipts = 0;
  for (let batch = 0; receipts < target; batch++) {
    receipts += await readBatch(service, `b${batch}`, 100);
  }
  await service.announcer.idle();
  const after = await backend.bytesOnDisk();
  const perReceipt = (bytes: number) => Math.round(((bytes - before) / receipts) * 10) / 10;
  const withoutLog = await backend.bytesWithoutLog?.();
  console.log(
    JSON.stringify({
      store: storeName,
      receipts,
      bytesBefore: before,
      bytesAfter: after,
      // With its change-log entry (and the rows of the messages, 1 per 100 receipts).
      bytesPerReceipt: perReceipt(after),
      ...(withoutLog === undefined ? {} : { bytesPerReceiptWithoutLog: perReceipt(withoutLog) }),
    }),
  );
}

async function soak(): Promise<void> {
  const seconds = Number(arg1 ?? 60);
  const retentionSeconds = Number(arg2 ?? 10);
  const retentionMs = retentionSeconds * 1000;
  const backend = await open(retentionMs, true);
  const service = new ReceiptService({
    store: backend.store,
    feed: backend.feed,
    retentionOf: () => retentionMs,
  });
  try {
    await soakOn(backend, service, seconds);
  } finally {
    await service.announcer.close();
    await backend.close();
  }
}

async function soakOn(
  backend: Backend,
  service: InstanceType<typeof ReceiptService>,
  seconds: number,
): Promise<void> {
  await setUp(backend);
  const start = Date.now();
  let receipts = 0;
  let nextReport = start;
  for (let round = 0; Date.now() - start < seconds * 1000; round++) {
    const began = Date.now();
    receipts += await readBatch(service, `s${round}`, 10);
    if (Date.now() >= nextReport) {
      nextReport += 5_000;
      const bytes = await backend.bytesOnDisk();
      const elapsed = Math.round((Date.now() - start) / 1000);
      console.log(JSON.stringify({ store: storeName, elapsed, receipts, bytesOnDisk: bytes }));
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 1_000 - (Date.now() - began))));
  }
}

if (mode !== "bytes" && mode !== "soak") throw new Error(`unknown mode ${mode}: bytes or soak`);
await (mode === "bytes" ? measureBytes() : soak());
process.exit(0);
