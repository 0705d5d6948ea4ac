import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { join } from "node:path";
import { Client } from "cassandra-driver";
import { Redis } from "ioredis";

const root = join(import.meta.dirname, "..", "..");

const packageVersion = (name: string): string =>
  (
    JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")) as {
      version: string;
    }
  ).version;

export interface MachineInfo {
  readonly nproc: number;
  readonly memoryGiB: number;
  readonly cpuModel: string;
  readonly kernel: string;
}

export function machineInfo(): MachineInfo {
  return {
    nproc: Number(execFileSync("nproc", ["--all"]).toString().trim()),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    cpuModel: cpus()[0]?.model.trim() ?? "unknown",
    kernel: release(),
  };
}

/** Versions of everything the figures depend on; a server that does not answer reads "not running". */
export async function versions(options: {
  readonly redisUrl: string;
  readonly cassandra?: {
    readonly contactPoints: readonly string[];
    readonly localDataCenter: string;
  };
}): Promise<Record<string, string>> {
  const found: Record<string, string> = { node: process.version };
  for (const name of [
    "@connectrpc/connect",
    "@connectrpc/connect-node",
    "@bufbuild/protobuf",
    "@grpc/grpc-js",
    "cassandra-driver",
    "ioredis",
  ]) {
    found[name] = packageVersion(name);
  }
  found.h2load = execFileSync("h2load", ["--version"]).toString().trim();
  const redis = new Redis(options.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    found.redis = /redis_version:(\S+)/.exec(await redis.info("server"))?.[1] ?? "unknown";
  } catch {
    found.redis = "not running";
  } finally {
    redis.disconnect();
  }
  if (options.cassandra !== undefined) {
    // Only where and which data center: a keyspace here would fail the connection before the
    // benchmark has created it.
    const client = new Client({
      contactPoints: [...options.cassandra.contactPoints],
      localDataCenter: options.cassandra.localDataCenter,
    });
    try {
      await client.connect();
      const row = (await client.execute("SELECT release_version FROM system.local")).first();
      found.cassandra = String(row?.get("release_version"));
    } catch {
      found.cassandra = "not running";
    } finally {
      await client.shutdown();
    }
  }
  return found;
}
