import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Client } from "cassandra-driver";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { ConversationType, TrackedMessageSchema } from "../gen/receipts/v1/receipts_pb.js";
import { ConfigError, loadConfig } from "../src/config.js";
import { silentLogger } from "../src/logger.js";
import { applyCassandraSchema, loadSchemaFiles } from "../src/store/cassandra/cassandra-schema.js";
import {
  forwardServerWarnings,
  type ServerWarning,
  serverWarningOf,
} from "../src/store/cassandra/cassandra-server-warnings.js";
import { RedisChangeFeed } from "../src/store/redis/redis-change-feed.js";
import { connectRedis } from "../src/store/redis/redis-connection.js";
import { describeLifecycleContract } from "./deletion-contract.js";
import { describePrivacyContract } from "./privacy-contract.js";
import { describeReadMembersBatchContract } from "./read-members-batch-contract.js";
import { describeReceiptContract } from "./store-contract.js";
import { cassandraCacheBackend } from "./support/cassandra-cache-backend.js";
import { serverWithGroup } from "./support/cassandra-service.js";
import {
  keyspace,
  receiptRecordCount,
  sharedPrefix,
  sharedRedisUrl,
  useCassandraKeyspace,
} from "./support/cassandra-store-fixtures.js";
import { testReplication } from "./support/cassandra-test-keyspace.js";
import { minutes } from "./support/fixtures.js";
import { describeUserDataContract } from "./user-data-contract.js";

/** The store contract on Cassandra + Redis, the service on it over the network, its schema and configuration. */
useCassandraKeyspace();

const openCassandraBackend = async () =>
  cassandraCacheBackend(
    keyspace.client,
    keyspace.keyspace,
    connectRedis(sharedRedisUrl),
    sharedPrefix,
  );

describeReceiptContract("Cassandra + Redis", openCassandraBackend);
describeReadMembersBatchContract("Cassandra + Redis", openCassandraBackend);
describeUserDataContract("Cassandra + Redis", openCassandraBackend, {
  largeGroup: { members: 100_000, messages: 10_000 },
  openPeer: openCassandraBackend,
});
describePrivacyContract("Cassandra + Redis", openCassandraBackend);
// With the Redis change feed too, as deployed: a deletion's XDEL of the log entries.
describeLifecycleContract("Cassandra + Redis (cache and change feed)", async () => {
  const backend = await openCassandraBackend();
  const feed = await RedisChangeFeed.open({
    url: sharedRedisUrl,
    keyPrefix: `${sharedPrefix}lifecycle:`,
    retentionMs: 3_600_000,
    logger: silentLogger,
  });
  return {
    store: backend.store,
    feed,
    otherReceiptRows: receiptRecordCount,
    async close() {
      await feed.close();
      await backend.close();
    },
  };
});

/** The real server on this file's keyspace, with a group of `members` from minute 0. */
describe("the service on Cassandra + Redis, over the network", () => {
  it("serves every write and count through RECEIPTS_STORE=cassandra", async () => {
    const { server, groupId, receipts } = await serverWithGroup(["alice", "bob", "carol"]);
    try {
      await receipts.trackMessages({
        messages: [
          create(TrackedMessageSchema, {
            conversationId: groupId,
            conversationType: ConversationType.GROUP,
            messageId: `${groupId}-m1`,
            senderId: "alice",
            sentAt: timestampFromMs(minutes(10)),
          }),
        ],
      });
      const sent = await receipts.sendReceipts({
        conversationId: groupId,
        readerId: "bob",
        messageIds: [`${groupId}-m1`],
      });
      expect(sent.receipts[0]).toMatchObject({ readCount: 1, unreadCount: 1 });
      const got = await receipts.getReceipts({
        conversationId: groupId,
        messageIds: [`${groupId}-m1`],
      });
      expect(got.receipts[0]).toMatchObject({ readCount: 1, unreadCount: 1 });
      // Counts are served from the Redis entry the receipt kept up to date, and operators see it.
      await receipts.getReceipts({ conversationId: groupId, messageIds: [`${groupId}-m1`] });
      const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
      const lookups = (result: string) =>
        Number(
          new RegExp(
            `receipts_cache_lookups_total\\{cache="read_counts",result="${result}"\\} (\\d+)`,
          ).exec(metrics)?.[1],
        );
      expect(lookups("hit")).toBeGreaterThanOrEqual(1);
      expect(lookups("miss")).toBeGreaterThanOrEqual(0);
      const missing = await receipts
        .getReceipts({ conversationId: groupId, messageIds: ["nope"] })
        .catch((error: unknown) => ConnectError.from(error));
      expect(missing).toMatchObject({ code: Code.NotFound });
    } finally {
      await server.stop();
    }
  });
});

describe("Cassandra's warnings, as operators see them", () => {
  it("logs a table's warnings once a minute at most, and counts every one", () => {
    const client = new EventEmitter();
    const lines: Record<string, unknown>[] = [];
    const logger = pino(
      { level: "warn" },
      { write: (line: string) => lines.push(JSON.parse(line)) },
    );
    const counted: ServerWarning[] = [];
    forwardServerWarnings(client as unknown as Client, logger, (w) => counted.push(w));
    const tombstones =
      'Received warning (1 of 1) "Read 0 live rows and 1100 tombstone cells for query SELECT payload FROM ks.pending_changes" for "SELECT payload FROM ks.pending_changes WHERE shard = ?"';
    for (let i = 0; i < 5; i++) client.emit("log", "warning", "RequestHandler", tombstones);
    client.emit("log", "info", "Client", "Connecting to cluster");
    expect(counted).toHaveLength(5);
    expect(lines.map((l) => [l.table, l.kind, l.msg])).toEqual([
      ["ks.pending_changes", "tombstones", "Cassandra warned of a request"],
    ]);
  });

  it("tells a warning's table and kind from the driver's message", () => {
    expect(
      serverWarningOf(
        'Received warning (1 of 1) "Read 0 live rows and 1100 tombstone cells for query SELECT payload FROM ks.pending_changes WHERE shard, bucket = (1, 2) LIMIT 1000; token 1 (see tombstone_warn_threshold)" for "SELECT payload FROM ks.pending_changes WHERE shard = ? AND bucket = ? LIMIT ?"',
      ),
    ).toEqual({ table: "ks.pending_changes", kind: "tombstones" });
    expect(
      serverWarningOf(
        'Received warning (1 of 1) "Batch for [ks.readers_by_message] is of size 70.1KiB, exceeding specified threshold of 64.0KiB by 6.1KiB." for "batch"',
      ),
    ).toEqual({ table: "", kind: "batch_size" });
  });
});

describe("private reads on Cassandra", () => {
  it("erasing a reader removes its entries of the by-message index too (they name the user)", async () => {
    const backend = await openCassandraBackend();
    try {
      const tenant = `t-${randomUUID()}`;
      const message = {
        conversationId: "g",
        conversationType: "group" as const,
        messageId: "m1",
        senderId: "alice",
        sentAt: minutes(1),
        receiverId: "",
      };
      for (const readerId of ["bob", "carol"]) {
        await backend.store.insertPrivateReceipts(tenant, readerId, [
          { message, readAt: minutes(2) },
        ]);
      }
      const indexed = async () =>
        (
          await keyspace.client.execute(
            `SELECT reader_id FROM ${keyspace.keyspace}.private_readers_by_message WHERE tenant = ? AND message_id = ?`,
            [tenant, "m1"],
            { prepare: true },
          )
        ).rows.map((row) => row.get("reader_id") as string);
      expect(await indexed()).toEqual(["bob", "carol"]);
      expect(await backend.store.eraseUserPrivacy(tenant, "bob")).toEqual({
        settings: 0,
        privateReceipts: 1,
      });
      expect(await indexed()).toEqual(["carol"]);
      expect(await backend.store.deletePrivateReceiptsOf(tenant, ["m1"])).toBe(1);
      expect(await indexed()).toEqual([]);
    } finally {
      await backend.close();
    }
  });
});

describe("Cassandra schema and configuration", () => {
  it("applies the versioned CQL files once: a second start changes nothing", async () => {
    const files = loadSchemaFiles();
    expect(files.map((f) => f.version)).toEqual(files.map((_, i) => i + 1));
    expect(files.every((f) => f.statements.every((s) => s.includes("IF NOT EXISTS")))).toBe(true);
    const version = await applyCassandraSchema(keyspace.client, {
      keyspace: keyspace.keyspace,
      replication: testReplication,
    });
    expect(version).toBe(files.length);
    const rows = await keyspace.client.execute(
      `SELECT version FROM ${keyspace.keyspace}.schema_version`,
    );
    expect(rows.rows.map((r) => r.get("version") as number).sort()).toEqual(
      files.map((f) => f.version),
    );
  });

  it("reads every RECEIPTS_CASSANDRA_* variable and reports each bad one", () => {
    const config = loadConfig({
      RECEIPTS_STORE: "cassandra",
      RECEIPTS_CASSANDRA_CONTACT_POINTS: "10.0.0.1:9042, 10.0.0.2",
      RECEIPTS_CASSANDRA_LOCAL_DC: "eu-west",
      RECEIPTS_CASSANDRA_KEYSPACE: "receipts_prod",
      RECEIPTS_CASSANDRA_REPLICATION: "{'class': 'NetworkTopologyStrategy', 'eu-west': 3}",
      RECEIPTS_CASSANDRA_CONSISTENCY: "QUORUM",
      RECEIPTS_CASSANDRA_LOCAL_CACHE_ENTRIES: "5000",
      RECEIPTS_CASSANDRA_OUTBOX_LAPSE_SECONDS: "4",
      RECEIPTS_REDIS_CACHE_TTL_SECONDS: "60",
      RECEIPTS_REDIS_CACHE_MAX_SUSPECTS: "2000",
    });
    expect(config.store).toBe("cassandra");
    expect(config.cassandra).toEqual({
      contactPoints: ["10.0.0.1:9042", "10.0.0.2"],
      localDataCenter: "eu-west",
      keyspace: "receipts_prod",
      replication: "{'class': 'NetworkTopologyStrategy', 'eu-west': 3}",
      consistency: "QUORUM",
      serialConsistency: "LOCAL_SERIAL",
      cacheTtlMs: 60_000,
      cacheMaxSuspects: 2_000,
      localCacheEntries: 5_000,
      outboxLapseMs: 4_000,
    });
    expect(loadConfig({}).cassandra.localCacheEntries).toBe(50_000);
    expect(loadConfig({}).cassandra.outboxLapseMs).toBe(10_000);
    expect(loadConfig({}).cassandra.cacheMaxSuspects).toBe(100_000);
    let error: unknown;
    try {
      loadConfig({
        RECEIPTS_STORE: "cassandra",
        RECEIPTS_CASSANDRA_KEYSPACE: "Bad-Name",
        RECEIPTS_CASSANDRA_REPLICATION: "{'class': 'SimpleStrategy'}; DROP KEYSPACE x",
        RECEIPTS_CASSANDRA_CONSISTENCY: "TWO",
        RECEIPTS_CASSANDRA_CONTACT_POINTS: "a b",
        RECEIPTS_CASSANDRA_LOCAL_CACHE_ENTRIES: "-1",
        RECEIPTS_CASSANDRA_OUTBOX_LAPSE_SECONDS: "1",
        RECEIPTS_REDIS_CACHE_MAX_SUSPECTS: "0",
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join("\n");
    for (const name of [
      "KEYSPACE",
      "REPLICATION",
      "CONSISTENCY",
      "CONTACT_POINTS",
      "LOCAL_CACHE_ENTRIES",
      "OUTBOX_LAPSE_SECONDS",
    ]) {
      expect(problems).toContain(`RECEIPTS_CASSANDRA_${name}=`);
    }
    expect(problems).toContain("RECEIPTS_REDIS_CACHE_MAX_SUSPECTS=0");
  });
});
