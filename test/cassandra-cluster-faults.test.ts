import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { defaultTenant } from "../src/api/tenant-context.js";
import { bothStarted } from "./support/both-started.js";
import { buildService, type ServiceProcess, startBuiltService } from "./support/built-service.js";
import { CassandraClusterProcesses } from "./support/cassandra-cluster.js";
import { createTestKeyspace } from "./support/cassandra-test-keyspace.js";
import {
  type Call,
  countsThrough,
  expectCountsWithinRecord,
  expectEveryAcknowledgedDelivered,
  grpc,
  receiptPairs,
  recount,
  seed,
  sendUntil,
  sleep,
  watchResuming,
} from "./support/fault-load.js";
import { users } from "./support/fixtures.js";
import { RedisClusterProcesses } from "./support/redis-cluster.js";

/**
 * The whole scale-out topology at once: two service processes on a three-node Cassandra
 * cluster of this file's own, keyspace at RF 3 with LOCAL_QUORUM (the service's default), and
 * a Redis Cluster of its own (three masters, three replicas) for the change feed, the
 * read-count cache and the rate limiter. Receipts go in through both instances while a
 * watcher follows on one; then a Cassandra node, a Redis master or a service instance is
 * killed with SIGKILL, or a Redis master paused with SIGSTOP past its failover. Every call is
 * recorded, and what the record promises is checked: every acknowledged receipt is stored,
 * counted once and reaches the watcher once.
 */
const keyPrefix = `cassandra-cluster-${randomBytes(3).toString("hex")}:`;
/** The change log of the development tenant, whose master the Redis fault hits. */
const streamKey = `${keyPrefix}feed:{${defaultTenant}}:changes`;
let cluster: CassandraClusterProcesses;
let redis: RedisClusterProcesses;
let keyspace: Awaited<ReturnType<typeof createTestKeyspace>>;
let build: ReturnType<typeof buildService>;
let env: Record<string, string>;
const instances: ServiceProcess[] = [];

beforeAll(async () => {
  build = buildService("cassandra-cluster");
  await bothStarted(CassandraClusterProcesses.start(), RedisClusterProcesses.start(), (c, r) => {
    if (c !== undefined) cluster = c;
    if (r !== undefined) redis = r;
  });
  keyspace = await createTestKeyspace({
    contactPoints: cluster.contactPoints,
    replication: CassandraClusterProcesses.replication,
  });
  await CassandraClusterProcesses.untilEveryReplicaAnswers(keyspace.client, keyspace.keyspace);
  env = {
    RECEIPTS_STORE: "cassandra",
    RECEIPTS_CASSANDRA_CONTACT_POINTS: cluster.contactPoints.join(","),
    RECEIPTS_CASSANDRA_KEYSPACE: keyspace.keyspace,
    RECEIPTS_CASSANDRA_REPLICATION: CassandraClusterProcesses.replication,
    RECEIPTS_REDIS_CLUSTER_NODES: redis.nodes,
    RECEIPTS_REDIS_KEY_PREFIX: keyPrefix,
  };
  instances.push(
    ...(await Promise.all([startBuiltService(build.dir, env), startBuiltService(build.dir, env)])),
  );
}, 900_000);

afterAll(async () => {
  for (const instance of instances) instance.child.kill("SIGKILL");
  await keyspace?.drop();
  await Promise.all([cluster?.stop(), redis?.stop()]);
  build?.remove();
}, 300_000);

interface Run {
  readonly calls: Call[];
  readonly faultAt: number;
  readonly messageIds: string[];
  readonly watcher: ReturnType<typeof watchResuming>;
}

/**
 * Load through both instances (callers alternate; `alive()` lists who may be called) with a
 * resuming watcher on the last of them, `fault` a second in, the load kept until the fault is
 * over and at least `loadMs`.
 */
async function underFault(
  group: string,
  alive: () => readonly ServiceProcess[],
  fault: () => Promise<void>,
  loadMs: number,
): Promise<Run> {
  const readers = users(`${group}-r`, 20);
  const messageIds = await seed(alive()[0]?.baseUrl as string, group, readers, 400);
  const instanceFor = (n: number) => {
    const up = alive();
    return grpc((up[n % up.length] as ServiceProcess).baseUrl);
  };
  const watcher = watchResuming(() => grpc((alive().at(-1) as ServiceProcess).baseUrl), group);
  await watcher.opened;
  const calls: Call[] = [];
  const startedAt = Date.now();
  let faultOver = false;
  const loadDone = sendUntil(
    instanceFor,
    group,
    receiptPairs(readers, messageIds),
    calls,
    () => faultOver && Date.now() - startedAt > loadMs,
  );
  await sleep(1_000);
  const faultAt = Date.now();
  await fault();
  faultOver = true;
  await loadDone;
  const acknowledged = calls.filter((call) => call.outcome === "ok");
  expect(acknowledged.filter((call) => call.startedAt < faultAt).length).toBeGreaterThan(0);
  expect(acknowledged.filter((call) => call.startedAt > faultAt).length).toBeGreaterThan(0);
  return { calls, faultAt, messageIds, watcher };
}

/**
 * Counts through every instance equal a recount from Cassandra, within what the record allows,
 * once the outbox is settled: a receipt that a killed instance stored and never counted (it
 * died before answering) is counted by the survivor's sweep of its outbox, after its heartbeat
 * was silent for the outbox lapse (10 s) and the next sweep (1 s). Until then an instance may
 * count one reader fewer; past it, never.
 */
async function expectCountsExact(group: string, run: Run): Promise<void> {
  const touched = [...new Set(run.calls.map((call) => call.messageId))];
  const truth = await recount(keyspace, group, run.messageIds, touched);
  await vi.waitFor(
    async () => {
      for (const instance of instances) {
        expect(await countsThrough(grpc(instance.baseUrl), group, touched)).toEqual(truth);
      }
    },
    { timeout: settledWithinMs, interval: 500 },
  );
  expectCountsWithinRecord(truth, run.calls);
}

/** The outbox lapse (10 s) and a sweep (1 s), from a fault that ended just before, and margin. */
const settledWithinMs = 20_000;

const summary = (calls: readonly Call[]) =>
  `${calls.length} calls: ${calls.filter((c) => c.outcome === "ok").length} ok, ${calls.filter((c) => c.outcome === "failed").length} failed`;

describe("two instances on a three-node Cassandra cluster (RF 3, LOCAL_QUORUM) and a Redis Cluster", () => {
  it("loses no acknowledged receipt and keeps answering when a Cassandra node is killed (-9), then restarted", async () => {
    let restartedAt = 0;
    const run = await underFault(
      "node-killed",
      () => instances,
      async () => {
        cluster.kill(2);
        await sleep(6_000); // load on two of three nodes
        await cluster.restart(2);
        await CassandraClusterProcesses.untilEveryReplicaAnswers(
          keyspace.client,
          keyspace.keyspace,
        );
        restartedAt = Date.now();
      },
      10_000,
    );
    // With two of three replicas a quorum answers: only calls in flight when the node died
    // (or while the driver learnt it was gone) may fail.
    const failedLater = run.calls.filter(
      (call) => call.outcome === "failed" && call.startedAt > run.faultAt + 2_000,
    );
    expect(failedLater).toEqual([]);
    await expectEveryAcknowledgedDelivered(run.watcher, run.calls);
    await expectCountsExact("node-killed", run);
    console.log(
      `kill -9 of Cassandra node 2: ${summary(run.calls)}; node back after ${restartedAt - run.faultAt} ms; watcher streams ended ${JSON.stringify(run.watcher.endings)}`,
    );
  }, 600_000);

  it("loses no acknowledged receipt when the change log's Redis master is killed (-9) and its replica takes over", async () => {
    const master = await redis.masterOf(streamKey);
    const run = await underFault(
      "redis-master-killed",
      () => instances,
      async () => {
        redis.kill(master);
        await redis.failedOver(master);
        // Restarted, as an orchestrator would: it rejoins as the new master's replica.
        await redis.restartStopped();
      },
      6_000,
    );
    // Changes that could not be logged while the master was gone stay pending in the outbox
    // and are published once a master answers again.
    await expectEveryAcknowledgedDelivered(run.watcher, run.calls);
    await expectCountsExact("redis-master-killed", run);
    console.log(
      `kill -9 of Redis master ${master}: ${summary(run.calls)}; watcher streams ended ${JSON.stringify(run.watcher.endings)}`,
    );
  }, 300_000);

  it("loses no acknowledged receipt when the change log's Redis master is paused (SIGSTOP) past a failover", async () => {
    const master = await redis.masterOf(streamKey);
    const run = await underFault(
      "redis-master-paused",
      () => instances,
      async () => {
        redis.pause(master);
        try {
          await redis.failedOver(master);
          await sleep(1_000);
        } finally {
          // Waking, it learns it was replaced and rejoins as a replica.
          redis.resume(master);
        }
      },
      8_000,
    );
    await expectEveryAcknowledgedDelivered(run.watcher, run.calls);
    await expectCountsExact("redis-master-paused", run);
    console.log(
      `SIGSTOP of Redis master ${master}: ${summary(run.calls)}; watcher streams ended ${JSON.stringify(run.watcher.endings)}`,
    );
  }, 300_000);

  it("loses no acknowledged receipt when a service instance is killed (-9) mid-load; its watcher resumes on the other", async () => {
    const [survivor, victim] = instances as [ServiceProcess, ServiceProcess];
    let victimUp = true;
    const run = await underFault(
      "instance-killed",
      () => (victimUp ? [survivor, victim] : [survivor]),
      async () => {
        victim.child.kill("SIGKILL");
        victimUp = false;
      },
      6_000,
    );
    // Receipts the dead instance acknowledged but had not yet logged are in the outbox, which
    // the survivor sweeps: they reach the watcher, now on the survivor, all the same.
    await expectEveryAcknowledgedDelivered(run.watcher, run.calls);
    // The victim restarted, as an orchestrator would: every instance counts the same.
    instances[1] = await startBuiltService(build.dir, env);
    await expectCountsExact("instance-killed", run);
    console.log(
      `kill -9 of a service instance: ${summary(run.calls)}; watcher streams ended ${JSON.stringify(run.watcher.endings)}`,
    );
  }, 300_000);
});
