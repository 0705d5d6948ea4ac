import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Client, types } from "cassandra-driver";
import { createCassandraClient } from "../../src/store/cassandra/cassandra-client.js";

const run = promisify(execFile);
const scripts = join(import.meta.dirname, "..", "..", "scripts");

/**
 * A three-node Cassandra cluster of the test file's own, started and stopped by
 * scripts/cassandra-cluster-start.sh and -stop.sh in a temporary folder, on loopback addresses
 * no developer's cluster uses (the scripts' default is 127.0.0.2-4), so tests may kill its
 * nodes without touching the shared node on 127.0.0.1.
 */
export class CassandraClusterProcesses {
  static readonly addresses = ["127.0.0.12", "127.0.0.13", "127.0.0.14"] as const;
  /** The keyspace replication the fault tests run at. */
  static readonly replication = "{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}";
  readonly #dir = mkdtempSync(join(tmpdir(), "receipts-cassandra-cluster-"));

  private constructor() {}

  /**
   * Resolves once the three nodes answer CQL and know each other as up: a node answers CQL
   * before gossip has told it of the others (CI of 2026-12-02: the schema's first quorum read
   * found "only 1 alive"), so a probe keyspace at RF 3 is written at ALL until that succeeds.
   */
  static async start(): Promise<CassandraClusterProcesses> {
    const cluster = new CassandraClusterProcesses();
    await cluster.#script("cassandra-cluster-start.sh");
    const client = createCassandraClient({
      contactPoints: cluster.contactPoints,
      localDataCenter: "datacenter1",
    });
    try {
      await client.execute(
        `CREATE KEYSPACE IF NOT EXISTS cluster_probe WITH replication = ${CassandraClusterProcesses.replication}`,
      );
      await CassandraClusterProcesses.untilEveryReplicaAnswers(client, "cluster_probe");
    } finally {
      await client.shutdown();
    }
    return cluster;
  }

  get contactPoints(): string[] {
    return CassandraClusterProcesses.addresses.map((address) => `${address}:9042`);
  }

  /** SIGKILL of node 1, 2 or 3: what a crash looks like to the others and to clients. */
  kill(node: 1 | 2 | 3): void {
    const pidFile = join(this.#dir, `node${node}`, "logs", "cassandra.pid");
    process.kill(Number(readFileSync(pidFile, "utf8").trim()), "SIGKILL");
  }

  /** Starts a node again on its data; resolves once it answers CQL. */
  async restart(node: 1 | 2 | 3): Promise<void> {
    await this.#script("cassandra-cluster-start.sh", "--node", String(node));
  }

  /**
   * Resolves once a write at consistency ALL to `keyspace` succeeds: every replica is up and
   * known to the others. A node answering CQL may still be joining gossip, and while it is, the
   * coordinators count it down (quorum calls then fail with "unavailable").
   */
  static async untilEveryReplicaAnswers(client: Client, keyspace: string, ms = 180_000) {
    await client.execute(
      `CREATE TABLE IF NOT EXISTS ${keyspace}.cluster_probe (id int PRIMARY KEY, at timestamp)`,
    );
    const deadline = Date.now() + ms;
    for (;;) {
      try {
        await client.execute(
          `INSERT INTO ${keyspace}.cluster_probe (id, at) VALUES (1, toTimestamp(now()))`,
          [],
          { consistency: types.consistencies.all },
        );
        return;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }

  async stop(): Promise<void> {
    await this.#script("cassandra-cluster-stop.sh");
    rmSync(this.#dir, { recursive: true, force: true });
  }

  async #script(name: string, ...args: string[]): Promise<void> {
    await run(join(scripts, name), args, {
      env: {
        ...process.env,
        CASSANDRA_CLUSTER_DIR: this.#dir,
        CASSANDRA_CLUSTER_ADDRESSES: CassandraClusterProcesses.addresses.join(" "),
        // A restarted node replays its commit log first: minutes on a loaded 2-core machine.
        CASSANDRA_START_TIMEOUT: process.env.CASSANDRA_START_TIMEOUT ?? "420",
      },
      timeout: 600_000,
    });
  }
}
