/**
 * Receipts/s, CPU per receipt and bytes per receipt on a three-node Cassandra cluster at RF 3
 * (LOCAL_QUORUM), for the capacity model (docs/capacity.md).
 *
 *   npm run build && node scripts/measure-cluster-throughput.ts [seconds=60] [callers=16]
 *
 * Starts three nodes of its own (scripts/cassandra-cluster-start.sh on 127.0.0.22-24, in a
 * temporary folder) and one service process on them (dist/src/main.js, keyspace at RF 3, the
 * shared Redis under a fresh key prefix), seeds a group, then sends receipts in calls of 10
 * from `callers` concurrent callers for `seconds`. It reads the CPU time of every process from
 * /proc before and after, and the keyspace's bytes on disk on every node once its memtables are
 * flushed (memtable_flush_period_in_ms, no nodetool), then stops what it started. Runs
 * directly on Node 24 (type stripping); the service's generated code is imported from dist/.
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import cassandra from "cassandra-driver";
import { Redis } from "ioredis";

const root = join(import.meta.dirname, "..");
const fromDist = async <T>(path: string): Promise<T> =>
  (await import(pathToFileURL(join(root, "dist", path)).href)) as T;
const { ReadReceiptService, ConversationType } = await fromDist<
  typeof import("../gen/receipts/v1/receipts_pb.js")
>("gen/receipts/v1/receipts_pb.js");
const { MembershipService } = await fromDist<typeof import("../gen/receipts/v1/membership_pb.js")>(
  "gen/receipts/v1/membership_pb.js",
);

const seconds = Number(process.argv[2] ?? 60);
const callers = Number(process.argv[3] ?? 16);
const idsPerCall = 10;
const readers = Array.from({ length: 200 }, (_, i) => `r${String(i).padStart(3, "0")}`);
const addresses = ["127.0.0.22", "127.0.0.23", "127.0.0.24"];
const replication = "{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}";
const keyspace = `measure_rf3_${randomBytes(3).toString("hex")}`;
const keyPrefix = `measure-rf3-${randomBytes(3).toString("hex")}:`;
const dir = mkdtempSync(join(tmpdir(), "receipts-measure-cluster-"));
const node = join(root, "node_modules", ".bin", "node");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function clusterScript(name: string): Promise<void> {
  await promisify(execFile)(join(root, "scripts", name), [], {
    env: {
      ...process.env,
      CASSANDRA_CLUSTER_DIR: dir,
      CASSANDRA_CLUSTER_ADDRESSES: addresses.join(" "),
    },
    timeout: 600_000,
  });
}

/** utime + stime of a process, in µs (clock ticks of 10 ms on Linux). */
function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

function bytesUnder(path: string): number {
  let total = 0;
  let entries: import("node:fs").Dirent[];
  try {
    entries = readdirSync(path, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const full = join(path, entry.name);
    total += entry.isDirectory() ? bytesUnder(full) : statSync(full).size;
  }
  return total;
}

const nodePids = () =>
  [1, 2, 3].map((n) =>
    Number(readFileSync(join(dir, `node${n}`, "logs", "cassandra.pid"), "utf8")),
  );
const keyspaceBytes = () =>
  [1, 2, 3].map((n) => bytesUnder(join(dir, `node${n}`, "data", "data", keyspace)));

function startService(): Promise<{ pid: number; baseUrl: string; stop(): void }> {
  const child = spawn(node, [join(root, "dist", "src", "main.js")], {
    env: {
      ...process.env,
      RECEIPTS_PORT: "0",
      RECEIPTS_STORE: "cassandra",
      RECEIPTS_CASSANDRA_CONTACT_POINTS: addresses.map((a) => `${a}:9042`).join(","),
      RECEIPTS_CASSANDRA_KEYSPACE: keyspace,
      RECEIPTS_CASSANDRA_REPLICATION: replication,
      RECEIPTS_REDIS_KEY_PREFIX: keyPrefix,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const port = /"port":(\d+)/.exec(output)?.[1];
      if (port !== undefined && child.pid !== undefined) {
        resolve({ pid: child.pid, baseUrl: `http://127.0.0.1:${port}`, stop: () => child.kill() });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => reject(new Error(`service exited with ${code}: ${output}`)));
  });
}

/** Waits until a write at ALL succeeds: every node answers and knows the others as up. */
async function untilClusterUp(): Promise<void> {
  const client = new cassandra.Client({
    contactPoints: addresses,
    localDataCenter: "datacenter1",
  });
  try {
    await client.execute(
      `CREATE KEYSPACE IF NOT EXISTS cluster_probe WITH replication = ${replication}`,
    );
    await client.execute("CREATE TABLE IF NOT EXISTS cluster_probe.probe (id int PRIMARY KEY)");
    for (let attempt = 0; ; attempt++) {
      try {
        await client.execute("INSERT INTO cluster_probe.probe (id) VALUES (1)", [], {
          consistency: cassandra.types.consistencies.all,
        });
        return;
      } catch (error) {
        if (attempt > 360) throw error;
        await sleep(500);
      }
    }
  } finally {
    await client.shutdown();
  }
}

/** Every table of the keyspace flushed within a second from now on, so files show its bytes. */
async function flushEverySecond(): Promise<void> {
  const client = new cassandra.Client({ contactPoints: addresses, localDataCenter: "datacenter1" });
  try {
    const tables = await client.execute(
      "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
      [keyspace],
    );
    for (const row of tables.rows) {
      await client.execute(
        `ALTER TABLE ${keyspace}.${row.get("table_name")} WITH memtable_flush_period_in_ms = 1000`,
      );
    }
  } finally {
    await client.shutdown();
  }
}

const startedAt = Date.now();
await clusterScript("cassandra-cluster-start.sh");
try {
  await untilClusterUp();
  console.error(`cluster up in ${Math.round((Date.now() - startedAt) / 1000)} s`);
  const service = await startService();
  try {
    const transport = createGrpcTransport({ baseUrl: service.baseUrl });
    const receipts = createClient(ReadReceiptService, transport);
    const group = "rf3";
    await createClient(MembershipService, transport).addMembers({
      groupId: group,
      userIds: ["s", ...readers],
      joinedAt: { seconds: 1n, nanos: 0 },
    });
    // Enough messages that no receipt repeats: callers × calls/s × seconds / readers, rounded up.
    const messageCount = Math.ceil((seconds * 4_000) / readers.length / idsPerCall) * idsPerCall;
    const messageIds = Array.from({ length: messageCount }, (_, i) => `m${i}`);
    for (let i = 0; i < messageIds.length; i += 100) {
      await receipts.trackMessages({
        messages: messageIds.slice(i, i + 100).map((messageId, k) => ({
          conversationId: group,
          conversationType: ConversationType.GROUP,
          messageId,
          senderId: "s",
          sentAt: { seconds: BigInt(60 + i + k), nanos: 0 },
        })),
      });
    }
    await flushEverySecond();
    await sleep(5_000);
    const bytesBefore = keyspaceBytes();
    const pids = { service: service.pid, nodes: nodePids() };
    const cpuBefore = [service.pid, ...pids.nodes].map(cpuMicros);
    let receiptsOk = 0;
    let callsFailed = 0;
    let next = 0;
    const latencies: number[] = [];
    const until = Date.now() + seconds * 1_000;
    const loadStart = Date.now();
    await Promise.all(
      Array.from({ length: callers }, async () => {
        while (Date.now() < until) {
          const n = next++;
          const reader = readers[n % readers.length] as string;
          const first = Math.floor(n / readers.length) * idsPerCall;
          const ids = messageIds.slice(first, first + idsPerCall);
          if (ids.length < idsPerCall) return;
          const t0 = performance.now();
          try {
            await receipts.sendReceipts({
              conversationId: group,
              readerId: reader,
              messageIds: ids,
            });
            receiptsOk += ids.length;
            latencies.push(performance.now() - t0);
          } catch {
            callsFailed++;
          }
        }
      }),
    );
    const loadMs = Date.now() - loadStart;
    const cpuAfter = [service.pid, ...pids.nodes].map(cpuMicros);
    await sleep(8_000); // memtables flushed
    const bytesAfter = keyspaceBytes();
    const cpu = cpuAfter.map((after, i) => after - (cpuBefore[i] as number));
    latencies.sort((a, b) => a - b);
    const pct = (p: number) =>
      Math.round((latencies[Math.floor((latencies.length - 1) * p)] ?? 0) * 10) / 10;
    const perReceipt = (micros: number) => Math.round(micros / receiptsOk);
    const nodeBytes = bytesAfter.map((after, i) => after - (bytesBefore[i] as number));
    console.log(
      JSON.stringify(
        {
          date: new Date().toISOString(),
          seconds: loadMs / 1000,
          callers,
          idsPerCall,
          receiptsOk,
          callsFailed,
          receiptsPerSecond: Math.round((receiptsOk / loadMs) * 1000),
          latencyMs: { p50: pct(0.5), p99: pct(0.99) },
          cpuMicrosPerReceipt: {
            service: perReceipt(cpu[0] as number),
            eachNode: cpu.slice(1).map(perReceipt),
            allNodes: perReceipt(cpu.slice(1).reduce((a, b) => a + b, 0)),
          },
          bytesPerReceipt: {
            eachNode: nodeBytes.map((b) => Math.round((b / receiptsOk) * 10) / 10),
            cluster: Math.round((nodeBytes.reduce((a, b) => a + b, 0) / receiptsOk) * 10) / 10,
          },
        },
        null,
        2,
      ),
    );
  } finally {
    service.stop();
  }
} finally {
  await clusterScript("cassandra-cluster-stop.sh");
  rmSync(dir, { recursive: true, force: true });
  const redis = new Redis(process.env.RECEIPTS_REDIS_URL ?? "redis://127.0.0.1:6379");
  const keys = await redis.keys(`${keyPrefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
}
