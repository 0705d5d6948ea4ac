import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { freePort, portIsFree } from "./free-port.js";
import { pickClusterPorts } from "./redis-cluster-ports.js";

const run = promisify(execFile);
const scripts = join(import.meta.dirname, "..", "..", "scripts");

/**
 * A Redis Cluster of the test file's own (three masters, three replicas on free loopback
 * ports), started and stopped by scripts/redis-cluster-start.sh and -stop.sh in a temporary
 * folder, so tests may kill and pause its nodes without touching the shared Redis.
 */
export class RedisClusterProcesses {
  readonly #dir = mkdtempSync(join(tmpdir(), "receipts-redis-cluster-"));

  private constructor(readonly ports: readonly number[]) {}

  /** `nodeTimeoutMs`: how long a silent master stays master before its replica takes over. */
  static async start(nodeTimeoutMs = 1_000): Promise<RedisClusterProcesses> {
    const cluster = new RedisClusterProcesses(await pickClusterPorts(freePort, portIsFree));
    try {
      await cluster.#start(nodeTimeoutMs);
    } catch (error) {
      // The nodes that did start are this test's: stop them rather than leave them running.
      await cluster.stop().catch(() => undefined);
      throw error;
    }
    return cluster;
  }

  /** RECEIPTS_REDIS_CLUSTER_NODES for this cluster. */
  get nodes(): string {
    return this.ports.map((port) => `127.0.0.1:${port}`).join(",");
  }

  /** Starts the nodes that are not running (a killed one rejoins) and waits for `ok`. */
  async restartStopped(): Promise<void> {
    await this.#start(1_000);
  }

  /** The port of the master that serves `key` now. */
  async masterOf(key: string): Promise<number> {
    return this.#ask(async (redis) => {
      const slot = Number(await redis.cluster("KEYSLOT", key));
      const shards = await redis.cluster("SLOTS");
      const master = shards.find(([from, to]) => slot >= from && slot <= to)?.[2];
      if (master === undefined) throw new Error(`no master serves slot ${slot}`);
      return master[1];
    });
  }

  /** The port of a replica of the master on `port`. */
  async replicaOf(port: number): Promise<number> {
    return this.#ask(async (redis) => {
      // CLUSTER NODES: `<id> <host:port@bus> <flags> <master id or -> ...`, a line per node.
      const nodes = String(await redis.cluster("NODES"))
        .trim()
        .split("\n")
        .map((line) => line.split(" "));
      const portOf = (address = "") => Number(address.split("@")[0]?.split(":").at(-1));
      const master = nodes.find((node) => portOf(node[1]) === port)?.[0];
      const replica = nodes.find((node) => master !== undefined && node[3] === master);
      if (replica === undefined) throw new Error(`no replica of node ${port}`);
      return portOf(replica[1]);
    });
  }

  /** Ports of the nodes with a client connection named `name` (CLIENT SETNAME). */
  async nodesWithClient(name: string): Promise<number[]> {
    const found: number[] = [];
    for (const port of this.ports) {
      const redis = new Redis(port, "127.0.0.1", {
        maxRetriesPerRequest: 0,
        commandTimeout: 2_000,
      });
      redis.on("error", () => undefined);
      try {
        if (String(await redis.client("LIST")).includes(` name=${name} `)) found.push(port);
      } catch {
        // Down or paused: it holds no client we could use.
      } finally {
        redis.disconnect();
      }
    }
    return found;
  }

  /** Ports of the masters now, as every node that answers agrees. */
  async masters(): Promise<number[]> {
    return this.#ask(async (redis) => {
      const shards = await redis.cluster("SLOTS");
      return [...new Set(shards.map((shard) => shard[2]?.[1] ?? 0))].sort();
    });
  }

  /** SIGKILL of one node: what a crash looks like to clients. */
  kill(port: number): void {
    process.kill(this.#pid(port), "SIGKILL");
  }

  /** SIGSTOP: the node's sockets stay open, it stops answering (and gossiping). */
  pause(port: number): void {
    process.kill(this.#pid(port), "SIGSTOP");
  }

  resume(port: number): void {
    process.kill(this.#pid(port), "SIGCONT");
  }

  /** Resolves once every running node says cluster_state:ok with `port` no longer a master. */
  async failedOver(port: number, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const masters = await this.masters().catch(() => [port]);
      if (masters.length === 3 && !masters.includes(port)) return;
      if (Date.now() > deadline) throw new Error(`node ${port} is still a master after ${ms} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async stop(): Promise<void> {
    await run(join(scripts, "redis-cluster-stop.sh"), [], {
      env: { ...process.env, REDIS_CLUSTER_DIR: this.#dir },
    });
    rmSync(this.#dir, { recursive: true, force: true });
  }

  async #start(nodeTimeoutMs: number): Promise<void> {
    await run(join(scripts, "redis-cluster-start.sh"), [], {
      env: {
        ...process.env,
        REDIS_CLUSTER_DIR: this.#dir,
        REDIS_CLUSTER_PORTS: this.ports.join(" "),
        REDIS_CLUSTER_NODE_TIMEOUT_MS: String(nodeTimeoutMs),
      },
      timeout: 60_000,
    });
  }

  #pid(port: number): number {
    return Number(readFileSync(join(this.#dir, String(port), "redis.pid"), "utf8").trim());
  }

  /** Asks the first node that answers (a killed or paused one does not). */
  async #ask<T>(question: (redis: Redis) => Promise<T>): Promise<T> {
    let lastError: unknown;
    for (const port of this.ports) {
      const redis = new Redis(port, "127.0.0.1", {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
        commandTimeout: 1_000,
        connectTimeout: 1_000,
      });
      redis.on("error", () => undefined);
      try {
        await redis.connect();
        return await question(redis);
      } catch (error) {
        lastError = error;
      } finally {
        redis.disconnect();
      }
    }
    throw lastError;
  }
}
