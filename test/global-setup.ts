import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Redis } from "ioredis";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));

/**
 * Real servers for the whole run: Cassandra on 127.0.0.1:9042 (started with
 * scripts/cassandra-start.sh when nothing answers there and stopped after the
 * run; a running node is left alone) and Redis on 127.0.0.1:6379
 * (started with redis-server when nothing answers and it is installed).
 */
export default async function setup(): Promise<() => Promise<void>> {
  const [startedCassandra] = await Promise.all([ensureCassandra(), ensureRedis()]);
  // A node this run started is stopped again (RECEIPTS_KEEP_CASSANDRA=1 keeps it for the next run).
  return async () => {
    if (!startedCassandra || process.env.RECEIPTS_KEEP_CASSANDRA === "1") return;
    const stop = fileURLToPath(new URL("../scripts/cassandra-stop.sh", import.meta.url));
    await promisify(execFile)(stop, { cwd: repoRoot, timeout: 120_000 });
  };
}

/** Resolves whether it started a node. */
async function ensureCassandra(): Promise<boolean> {
  if (process.env.RECEIPTS_CASSANDRA_CONTACT_POINTS !== undefined) return false; // someone else's cluster
  if (await answers(9042)) return false;
  const script = fileURLToPath(new URL("../scripts/cassandra-start.sh", import.meta.url));
  try {
    const { stdout } = await promisify(execFile)(script, { cwd: repoRoot, timeout: 300_000 });
    process.stdout.write(stdout);
    return true;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`could not start Cassandra:\n${stdout ?? ""}${stderr ?? ""}`);
  }
}

async function ensureRedis(): Promise<void> {
  if (await redisAnswers()) return;
  const child = spawn(
    "redis-server",
    [
      "--port",
      "6379",
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--daemonize",
      "yes",
    ],
    { stdio: "ignore" },
  );
  const [code] = (await Promise.race([once(child, "exit"), once(child, "error")])) as [unknown];
  if (code !== 0)
    throw new Error("Redis does not answer on 127.0.0.1:6379 and redis-server could not start it");
  for (let i = 0; i < 100; i++) {
    if (await redisAnswers()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("redis-server started but does not answer on 127.0.0.1:6379");
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port, timeout: 1_000 });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(false));
  });
}

async function redisAnswers(): Promise<boolean> {
  const redis = new Redis("redis://127.0.0.1:6379", {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  redis.on("error", () => undefined);
  try {
    await redis.connect();
    return (await redis.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}
