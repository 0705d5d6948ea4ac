import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultTenant } from "../src/api/tenant-context.js";
import { StoreUnavailableError } from "../src/domain/errors.js";
import type { ReceiptChange } from "../src/domain/model.js";
import { silentLogger } from "../src/logger.js";
import { RedisChangeFeed } from "../src/store/redis/redis-change-feed.js";
import { connectRedis } from "../src/store/redis/redis-connection.js";
import { RedisReadCountCache } from "../src/store/redis/redis-read-count-cache.js";
import { bothStarted } from "./support/both-started.js";
import { createTestKeyspace } from "./support/cassandra-test-keyspace.js";
import {
  type Call,
  countsThrough,
  expectCountsWithinRecord,
  expectEveryAcknowledgedDelivered,
  grpc,
  pairOf,
  receiptPairs,
  recount,
  seed,
  sendUntil,
  sleep,
  watchResuming,
} from "./support/fault-load.js";
import { users } from "./support/fixtures.js";
import { RedisClusterProcesses } from "./support/redis-cluster.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/**
 * Two service instances on one Cassandra keyspace and a Redis Cluster of this file's own
 * (change feed, read-count cache): receipts go in through one, a watcher follows on the
 * other, while a Redis master is killed or paused. Every call is recorded: a receipt whose
 * call answered OK must reach the watcher exactly once and be counted, the others may or
 * may not have been stored, and every count equals a recount from Cassandra.
 */
const keyPrefix = `cluster-faults-${randomBytes(3).toString("hex")}:`;
/** The change log of the development tenant, whose master the faults hit. */
const streamKey = `${keyPrefix}feed:{${defaultTenant}}:changes`;

let cluster: RedisClusterProcesses;
let keyspace: Awaited<ReturnType<typeof createTestKeyspace>>;
let writer: TestServer;
let watched: TestServer;

beforeAll(async () => {
  await bothStarted(RedisClusterProcesses.start(), createTestKeyspace(), (c, k) => {
    if (c !== undefined) cluster = c;
    if (k !== undefined) keyspace = k;
  });
  const env = {
    RECEIPTS_STORE: "cassandra",
    RECEIPTS_CASSANDRA_KEYSPACE: keyspace.keyspace,
    RECEIPTS_REDIS_CLUSTER_NODES: cluster.nodes,
    RECEIPTS_REDIS_KEY_PREFIX: keyPrefix,
  };
  [writer, watched] = await Promise.all([startTestServer(env), startTestServer(env)]);
}, 120_000);

afterAll(async () => {
  await Promise.all([writer?.stop(), watched?.stop()]);
  await cluster?.stop();
  await keyspace?.drop();
});

/**
 * Runs the load through `writer` with a resuming watcher on `watched`, applies `fault` a
 * second in, keeps the load for `loadMs`, then checks the record of every call.
 */
async function underFault(group: string, fault: () => Promise<void>, loadMs: number) {
  const readers = users(`${group}-r`, 20);
  const messageIds = await seed(writer.baseUrl, group, readers, 200);
  const watcher = watchResuming(() => grpc(watched.baseUrl), group);
  await watcher.opened;
  const calls: Call[] = [];
  const startedAt = Date.now();
  const loadDone = sendUntil(
    () => grpc(writer.baseUrl),
    group,
    receiptPairs(readers, messageIds),
    calls,
    () => Date.now() - startedAt > loadMs,
  );
  await sleep(1_000);
  const faultAt = Date.now();
  await fault();
  await loadDone;

  const acknowledged = calls.filter((call) => call.outcome === "ok");
  // The load ran through the fault: acknowledged calls before it and after it began. (A floor
  // on throughput would fail on a loaded machine without telling anything about the fault.)
  expect(acknowledged.filter((call) => call.startedAt < faultAt).length).toBeGreaterThan(0);
  expect(acknowledged.filter((call) => call.startedAt > faultAt).length).toBeGreaterThan(0);
  // Changes that could not be logged stay pending in the store's outbox and are published later.
  await expectEveryAcknowledgedDelivered(watcher, calls);

  // Counts through both instances (the cache on the cluster) equal a recount from Cassandra.
  const touched = [...new Set(calls.map((call) => call.messageId))];
  const truth = await recount(keyspace, group, messageIds, touched);
  for (const server of [writer, watched]) {
    expect(await countsThrough(grpc(server.baseUrl), group, touched)).toEqual(truth);
  }
  expectCountsWithinRecord(truth, calls);
  return { calls, acknowledged, endings: watcher.endings };
}

describe("two instances on a Redis Cluster", () => {
  it("delivers receipts sent through one instance to a watcher on the other", async () => {
    const readers = users("plain-r", 5);
    const [messageId] = await seed(writer.baseUrl, "plain", readers, 1);
    const watcher = watchResuming(() => grpc(watched.baseUrl), "plain");
    await watcher.opened;
    for (const readerId of readers) {
      await grpc(writer.baseUrl).sendReceipts({
        conversationId: "plain",
        readerId,
        messageIds: [messageId as string],
      });
    }
    for (let i = 0; i < 100 && watcher.updates.length < readers.length; i++) await sleep(50);
    await watcher.stop();
    expect(watcher.updates.map(pairOf)).toEqual(readers.map((r) => `${r}/${messageId}`));
    expect(
      watcher.updates.map((u) =>
        u.update.case === "receipt" ? u.update.value.receipt?.readCount : -1,
      ),
    ).toEqual([1, 2, 3, 4, 5]);
  }, 30_000);

  it("moves the doorbell to another node when its node is killed, and streams stay open", async () => {
    const [bellNode] = await cluster.nodesWithClient("receipts-feed-bell");
    expect(bellNode).toBeDefined();
    const readers = users("bell-r", 30);
    const [messageId] = await seed(writer.baseUrl, "bell", readers, 1);
    const watcher = watchResuming(() => grpc(watched.baseUrl), "bell");
    await watcher.opened;
    cluster.kill(bellNode as number);
    // Settled: the bell reconnected elsewhere (and a killed master was replaced).
    await sleep(4_000);
    expect(await cluster.nodesWithClient("receipts-feed-bell")).not.toContain(bellNode);
    const endedBefore = watcher.endings.length;
    for (const readerId of readers) {
      await grpc(writer.baseUrl).sendReceipts({
        conversationId: "bell",
        readerId,
        messageIds: [messageId as string],
      });
      await sleep(100);
    }
    for (let i = 0; i < 100 && watcher.updates.length < readers.length; i++) await sleep(50);
    await watcher.stop();
    expect(watcher.updates.map(pairOf)).toEqual(readers.map((r) => `${r}/${messageId}`));
    // Live from the doorbell's new node, not replayed by streams ended again and again.
    expect(watcher.endings.slice(endedBefore)).toEqual([]);
    await cluster.restartStopped();
  }, 60_000);

  it("hands out no position of the change log that its replica does not hold", async () => {
    // A paused master that wakes after its failover looks, to the feed, like a master without
    // a replica: its answers come from a history that the slot's next master may not share.
    const feed = await RedisChangeFeed.open({
      url: "redis://",
      clusterNodes: cluster.nodes.split(","),
      keyPrefix: `${keyPrefix}unconfirmed:`,
      retentionMs: 3_600_000,
      logger: silentLogger,
      publishTimeoutMs: 1_000,
      readTimeoutMs: 1_000,
    });
    const horizon = (readUpTo: number): ReceiptChange => ({
      kind: "horizon",
      conversationId: "unconfirmed",
      readerId: "r",
      readUpTo,
    });
    try {
      const [first] = await feed.publish(defaultTenant, [horizon(1)]);
      expect(await feed.head(defaultTenant)).toBe(first?.position);
      const replica = await cluster.replicaOf(await cluster.masterOf(streamKey));
      const updates: string[] = [];
      const interruptions: Error[] = [];
      const unlisten = feed.listen(
        defaultTenant,
        (change) => updates.push(change.position),
        (error) => interruptions.push(error),
      );
      await sleep(200);
      cluster.pause(replica);
      try {
        // The master appends (and rings), but neither the append nor any read counts.
        await expect(feed.publish(defaultTenant, [horizon(2)])).rejects.toBeInstanceOf(
          StoreUnavailableError,
        );
        await expect(feed.head(defaultTenant)).rejects.toBeInstanceOf(StoreUnavailableError);
        await expect(feed.readAfter(defaultTenant, "0-0", 10)).rejects.toBeInstanceOf(
          StoreUnavailableError,
        );
        expect(updates).toEqual([]);
        expect(interruptions.length).toBeGreaterThan(0);
      } finally {
        cluster.resume(replica);
      }
      // Once the replica has it, the entry the master took is handed out.
      let head: string | undefined;
      for (let i = 0; i < 100 && head === undefined; i++) {
        head = await feed.head(defaultTenant).catch(() => sleep(100).then(() => undefined));
      }
      expect(head).not.toBe(first?.position);
      expect(
        (await feed.readAfter(defaultTenant, first?.position ?? "", 10)).map((c) => c.position),
      ).toEqual([head]);
      unlisten();
    } finally {
      await feed.close();
    }
  }, 60_000);

  it("a reader one instance skipped while a master stalled is counted by the other on a master that did not", async () => {
    // A stalled master makes the whole cluster connection skip the cache (one timeout, not one
    // per call), so readers of messages on the other masters are not added either: the cluster
    // tier saw an instance count one reader fewer than Cassandra after a master was killed.
    const connect = () => connectRedis({ url: "redis://", clusterNodes: cluster.nodes.split(",") });
    const [redisA, redisB] = [connect(), connect()];
    const prefix = `${keyPrefix}skipped-readers:`;
    const [a, b] = [redisA, redisB].map(
      (redis) => new RedisReadCountCache(redis, { keyPrefix: prefix, ttlMs: 600_000 }),
    ) as [RedisReadCountCache, RedisReadCountCache];
    const stored = ["r1", "r2"];
    const readers = () =>
      (async function* () {
        yield [...stored];
      })();
    const masterOfMessage = (id: string) => cluster.masterOf(`${prefix}rc:{t/${id}}:set`);
    try {
      for (const redis of [redisA, redisB]) {
        for (let i = 0; i < 100 && redis.status !== "ready"; i++) await sleep(100);
      }
      const stalled = await masterOfMessage("m-stalled");
      let elsewhere = "";
      for (let i = 0; elsewhere === ""; i++) {
        if ((await masterOfMessage(`m-${i}`)) !== stalled) elsewhere = `m-${i}`;
      }
      const counted = await b.readCounts("t", ["m-stalled", elsewhere], () => readers);
      expect([counted.get("m-stalled"), counted.get(elsewhere)]).toEqual([2, 2]);
      stored.push("r3");
      cluster.pause(stalled);
      try {
        // The first add waits out the command timeout; the next is not even tried.
        expect(await a.readerRecorded("t", "m-stalled", "r3", readers)).toBeUndefined();
        expect(await a.readerRecorded("t", elsewhere, "r3", readers)).toBeUndefined();
      } finally {
        cluster.resume(stalled);
      }
      let count: number | undefined;
      for (let i = 0; i < 50 && count !== 3; i++) {
        count = (await b.readCounts("t", [elsewhere], () => readers)).get(elsewhere);
        if (count !== 3) await sleep(100);
      }
      expect(count).toBe(3);
    } finally {
      await Promise.all([a.close(), b.close()]);
      redisA.disconnect();
      redisB.disconnect();
    }
  }, 60_000);

  it("loses no acknowledged receipt when the change log's master is killed (-9) and its replica takes over", async () => {
    const master = await cluster.masterOf(streamKey);
    const { endings } = await underFault(
      "killed",
      async () => {
        cluster.kill(master);
        await cluster.failedOver(master);
        // Restarted, as an orchestrator would: it rejoins as the new master's replica.
        await cluster.restartStopped();
      },
      6_000,
    );
    console.log(`kill -9 of master ${master}: watcher streams ended ${JSON.stringify(endings)}`);
  }, 120_000);

  // Issue #19: about one run in five lost one acknowledged receipt's live update, when a read
  // the watcher's instance sent to the paused master before it knew of the failover was
  // answered after the master woke, with an entry that only the old master took: the tap moved
  // past the new master's entries before it. Reads now count only once a replica holds them.
  it("loses no acknowledged receipt when the change log's master is paused (SIGSTOP) past a failover", async () => {
    const master = await cluster.masterOf(streamKey);
    const { endings } = await underFault(
      "paused",
      async () => {
        cluster.pause(master);
        try {
          await cluster.failedOver(master);
          await sleep(1_000);
        } finally {
          cluster.resume(master);
        }
      },
      8_000,
    );
    console.log(`SIGSTOP of master ${master}: watcher streams ended ${JSON.stringify(endings)}`);
  }, 120_000);
});
