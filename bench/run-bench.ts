import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Client } from "cassandra-driver";
import { Redis } from "ioredis";
import { type BackendName, type BenchContext, connectClients, type Mode } from "./bench-context.js";
import { machineInfo, versions } from "./machine.js";
import { loadCpus, type ServiceProcess, serverCpu, startService } from "./processes.js";
import { type BackendResults, type BenchResults, renderTable } from "./report.js";
import { ceilingsScenario } from "./scenarios/ceilings.js";
import { fanOutScenario } from "./scenarios/fan-out.js";
import { getPairedScenario } from "./scenarios/get-paired.js";
import { getReceiptsScenario } from "./scenarios/get-receipts.js";
import { idleStreamsScenario } from "./scenarios/idle-streams.js";
import { largeGroupScenario } from "./scenarios/large-group.js";
import { sendReceiptsScenario } from "./scenarios/send-receipts.js";
import { soakScenario } from "./scenarios/soak.js";
import { webhooksScenario } from "./scenarios/webhooks.js";

/**
 * `npm run bench [-- --quick] [-- --store=embedded,cassandra] [-- --only=send,get]
 * [-- --cpu-prof=send]`: starts the service as its own process for each
 * scenario, drives it from load processes, writes bench/results/<date>-<mode>.json
 * and the table in docs/PERFORMANCE.md.
 */
const root = join(import.meta.dirname, "..", "..");
const scenarioNames = [
  "ceilings",
  "send",
  "sendHot",
  "get",
  "getPaired",
  "fanOut",
  "idleStreams",
  "largeGroup",
  "soak",
  "webhooks",
] as const;

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    full: { type: "boolean", default: false },
    store: { type: "string", default: "embedded,cassandra" },
    only: { type: "string", default: scenarioNames.join(",") },
    "cpu-prof": { type: "string", default: "" },
    "no-docs": { type: "boolean", default: false },
    label: { type: "string", default: "" },
  },
});
const mode: Mode = values.quick ? "quick" : "full";
const only = new Set(values.only.split(","));
const profiled = new Set(values["cpu-prof"].split(",").filter((s) => s !== ""));
const redisUrl = process.env.RECEIPTS_REDIS_URL ?? "redis://127.0.0.1:6379";
const runId = `b${Date.now().toString(36)}`;
const cassandra = {
  contactPoints: (process.env.RECEIPTS_CASSANDRA_CONTACT_POINTS ?? "127.0.0.1:9042").split(","),
  localDataCenter: process.env.RECEIPTS_CASSANDRA_LOCAL_DC ?? "datacenter1",
  // A keyspace of its own per run, dropped at the end: rows left by earlier runs (the bare
  // driver loop alone writes about 100,000) would be compacted during this one's figures.
  keyspace: `receipts_bench_${runId}`,
  consistency: "LOCAL_QUORUM",
};
const log = (message: string) =>
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);

function answers(hostPort: string): Promise<boolean> {
  const [host, port] = hostPort.split(":");
  return new Promise((resolve) => {
    const socket = connect(Number(port ?? 9042), host ?? "127.0.0.1");
    socket.setTimeout(2_000);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** The Cassandra + Redis backend runs when Cassandra answers, or once scripts/cassandra-start.sh started it. */
async function cassandraAvailable(): Promise<boolean> {
  const point = cassandra.contactPoints[0] as string;
  if (await answers(point)) return true;
  log("Cassandra is not running: scripts/cassandra-start.sh");
  try {
    execFileSync(join(root, "scripts", "cassandra-start.sh"), { stdio: "inherit" });
  } catch {
    return false;
  }
  return answers(point);
}

/** h2load (Debian's nghttp2-client) drives GetReceipts; installed when missing and we may. */
function ensureH2load(): void {
  const has = () => {
    try {
      execFileSync("h2load", ["--version"], { stdio: "ignore" });
      return true;
    } catch {
      return false;
    }
  };
  if (has()) return;
  if (process.getuid?.() === 0) {
    log("h2load is missing: installing Debian's nghttp2-client");
    execFileSync("apt-get", ["update", "-q"], { stdio: "inherit" });
    execFileSync("apt-get", ["install", "-y", "-q", "nghttp2-client"], { stdio: "inherit" });
  }
  if (!has()) throw new Error("h2load is needed: apt-get install -y nghttp2-client");
}

async function main(): Promise<void> {
  ensureH2load();
  // The benchmark itself (setup calls, probes, h2load) stays off the server's CPU.
  execFileSync("taskset", ["-cp", loadCpus, String(process.pid)], { stdio: "ignore" });
  const scratchDir = mkdtempSync(join(tmpdir(), "receipts-bench-"));
  const redisPrefix = `bench:${runId}:`;
  const backends: BackendName[] = [];
  for (const name of values.store.split(",")) {
    if (name === "embedded") backends.push("embedded");
    else if (name === "cassandra") {
      if (await cassandraAvailable()) backends.push("cassandra");
      else log("Cassandra could not be started: the Cassandra + Redis backend is left out");
    }
  }
  const settings = {
    serverCpu,
    loadCpus,
    RECEIPTS_LOG_LEVEL: "warn",
    cassandraConsistency: cassandra.consistency,
    redisKeyPrefix: redisPrefix,
    profiled: [...profiled].join(",") || "none",
  };
  const results: BenchResults = {
    date: new Date().toISOString(),
    mode,
    machine: { ...machineInfo() },
    versions: await versions({
      redisUrl,
      ...(backends.includes("cassandra") ? { cassandra } : {}),
    }),
    settings,
    backends: {},
  };
  const peaks = { sendCallsPerSecond: 100, getCallsPerSecond: 1_000 };
  try {
    for (const backend of backends) {
      const out: BackendResults = { failures: {} };
      results.backends[backend] = out;
      const env: Record<string, string> = {
        RECEIPTS_LOG_LEVEL: "warn",
        RECEIPTS_STORE: backend,
        RECEIPTS_DATA_DIR: join(scratchDir, backend),
        RECEIPTS_REDIS_URL: redisUrl,
        RECEIPTS_REDIS_KEY_PREFIX: redisPrefix,
        RECEIPTS_CASSANDRA_CONTACT_POINTS: cassandra.contactPoints.join(","),
        RECEIPTS_CASSANDRA_LOCAL_DC: cassandra.localDataCenter,
        RECEIPTS_CASSANDRA_KEYSPACE: cassandra.keyspace,
        RECEIPTS_CASSANDRA_CONSISTENCY: cassandra.consistency,
        // Every load process connects from loopback: one address holds all the benchmark's streams.
        RECEIPTS_MAX_STREAMS_PER_ADDRESS: "10000000",
        RECEIPTS_MAX_CONNECTIONS_PER_ADDRESS: "100000",
      };
      for (const name of scenarioNames) {
        if (!only.has(name)) continue;
        // The framework ceilings use no store: measured once per run, beside the first backend.
        if (name === "ceilings" && results.ceilings !== undefined) continue;
        log(`${backend}: ${name}`);
        const profileDir = join(root, "bench", "results", "tmp", `${runId}-${backend}-${name}`);
        if (profiled.has(name)) mkdirSync(profileDir, { recursive: true });
        let service: ServiceProcess | undefined;
        try {
          // A fresh process per scenario: memory and handle figures start from the same place.
          service = await startService(
            env,
            profiled.has(name) ? { cpuProfileDir: profileDir } : {},
          );
          const context: BenchContext = {
            mode,
            backend,
            service,
            ...connectClients(service.address),
            runId: `${runId}${backend[0]}`,
            redisUrl,
            redisPrefix,
            cassandra,
            scratchDir,
            startService: (extra) =>
              startService(
                { ...env, ...extra },
                profiled.has(name) ? { cpuProfileDir: profileDir } : {},
              ),
            log: (message) => log(`${backend}: ${message}`),
          };
          switch (name) {
            case "ceilings":
              results.ceilings = await ceilingsScenario(context);
              break;
            case "send":
              out.send = await sendReceiptsScenario(context);
              peaks.sendCallsPerSecond = out.send.receiptsPerSecond / out.send.workload.idsPerCall;
              break;
            case "sendHot":
              out.sendHot = await sendReceiptsScenario(context, "hot");
              break;
            case "get":
              out.get = await getReceiptsScenario(context);
              peaks.getCallsPerSecond = out.get.peak.getReceipts.callsPerSecond;
              break;
            case "getPaired":
              out.getPaired = await getPairedScenario(context);
              break;
            case "fanOut":
              out.fanOut = await fanOutScenario(context);
              break;
            case "idleStreams":
              out.idleStreams = await idleStreamsScenario(context);
              break;
            case "largeGroup":
              out.largeGroup = await largeGroupScenario(context);
              break;
            case "soak":
              out.soak = await soakScenario(context, peaks);
              break;
            case "webhooks":
              out.webhooks = await webhooksScenario(context);
              break;
          }
        } catch (error) {
          out.failures[name] =
            error instanceof Error ? (error.stack ?? error.message) : String(error);
          log(`${backend}: ${name} failed: ${out.failures[name]}`);
        } finally {
          await service?.stop();
        }
        if (profiled.has(name)) log(`CPU profile of the service in ${profileDir}`);
      }
    }
  } finally {
    await dropRedisKeys(redisPrefix);
    if (backends.includes("cassandra")) await dropKeyspace();
    rmSync(scratchDir, { recursive: true, force: true });
  }

  const table = renderTable(results);
  process.stdout.write(`\n${table}\n`);
  const resultsDir = join(root, "bench", "results");
  mkdirSync(resultsDir, { recursive: true });
  const label = values.label === "" ? "" : `-${values.label}`;
  const file = join(resultsDir, `${results.date.slice(0, 10)}-${mode}${label}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  log(`results in ${file}`);
  if (!values["no-docs"]) updateDocs(table, mode);
}

/** Deletes this run's Redis keys (and only those: the Redis is shared). */
async function dropRedisKeys(prefix: string): Promise<void> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1_000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== "0");
  } catch (error) {
    log(`could not drop Redis keys ${prefix}*: ${String(error)}`);
  } finally {
    redis.disconnect();
  }
}

/** Drops this run's keyspace (and only that one: the cluster may be shared). */
async function dropKeyspace(): Promise<void> {
  const client = new Client({
    contactPoints: cassandra.contactPoints,
    localDataCenter: cassandra.localDataCenter,
  });
  try {
    await client.execute(`DROP KEYSPACE IF EXISTS ${cassandra.keyspace}`, [], {
      readTimeout: 60_000,
    });
  } catch (error) {
    log(`could not drop keyspace ${cassandra.keyspace}: ${String(error)}`);
  } finally {
    await client.shutdown();
  }
}

/** Replaces the table of this mode in docs/PERFORMANCE.md, keeping the hand-written text. */
function updateDocs(table: string, runMode: Mode): void {
  const path = join(root, "docs", "PERFORMANCE.md");
  const begin = `<!-- bench:${runMode}:begin -->`;
  const end = `<!-- bench:${runMode}:end -->`;
  const text = existsSync(path) ? readFileSync(path, "utf8") : "# Performance\n";
  const block = `${begin}\n${table}\n${end}`;
  const at = text.indexOf(begin);
  const until = text.indexOf(end);
  const updated =
    at >= 0 && until > at
      ? text.slice(0, at) + block + text.slice(until + end.length)
      : `${text.trimEnd()}\n\n## Latest ${runMode} run\n\n${block}\n`;
  writeFileSync(path, updated);
  log(`table written to ${path}`);
}

await main();
