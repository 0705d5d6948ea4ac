import { getHeapStatistics } from "node:v8";

/**
 * Configuration, read from the environment once at start and validated as a
 * whole: every bad variable is reported, not just the first.
 */
export interface Config {
  readonly host: string;
  readonly port: number;
  readonly store: "embedded" | "cassandra";
  /** RECEIPTS_STORE=cassandra: Apache Cassandra, with Redis (redisUrl) caching read counts. */
  readonly cassandra: {
    readonly contactPoints: readonly string[];
    readonly localDataCenter: string;
    readonly keyspace: string;
    /** A CQL replication map, used when the keyspace is created. */
    readonly replication: string;
    readonly consistency: Consistency;
    readonly serialConsistency: SerialConsistency;
    /** How long a read count stays in Redis after it was built. */
    readonly cacheTtlMs: number;
    /** Entries that may miss a reader remembered at most; past it every entry is dropped. */
    readonly cacheMaxSuspects: number;
    /** Tracked messages kept in this process's memory, and as many membership facts. */
    readonly localCacheEntries: number;
    /** How long an instance's outbox heartbeat may be silent before the others take over. */
    readonly outboxLapseMs: number;
  };
  /** Where WatchReceipts changes are logged and fanned out: in process, or through Redis. */
  readonly changeFeed: "embedded" | "redis";
  readonly redisUrl: string;
  /**
   * Some nodes (`host:port`) of a Redis Cluster to use instead of the one server of redisUrl,
   * whose credentials and scheme then apply to every node; empty for a single server.
   */
  readonly redisClusterNodes: readonly string[];
  /** Starts every Redis key and channel of this service, so that deployments can share a Redis. */
  readonly redisKeyPrefix: string;
  readonly dataDir: string;
  readonly logLevel: string;
  /** `auto`: pretty lines when stdout is a terminal, JSON lines otherwise. */
  readonly logFormat: "auto" | "json" | "pretty";
  readonly watch: {
    readonly retentionMs: number;
    readonly heartbeatMs: number;
    readonly bufferLimit: number;
    readonly maxStreams: number;
    /** How often the groups users' open streams watch are re-read (a member who left: ended). */
    readonly accessCheckMs: number;
  };
  readonly shutdownGraceMs: number;
  /** The longest a unary call may take, whatever deadline its client set (DEADLINE_EXCEEDED). */
  readonly maxCallMs: number;
  /** EraseUser: rows one chunk removes at most, and how long one call goes on starting chunks. */
  readonly erasure: { readonly chunkRows: number; readonly callBudgetMs: number };
  /** After SIGTERM, how long to stay up not ready (answering probes) before closing. */
  readonly shutdownDelayMs: number;
  /** Browser origins (scheme://host[:port]) allowed to call the service cross-origin. */
  readonly corsOrigins: readonly string[];
  /** Where tenants come from; with neither source, development mode (loopback only). */
  readonly tenants: {
    readonly file: string | undefined;
    readonly json: string | undefined;
    readonly pollIntervalMs: number;
    /** RECEIPTS_WEBHOOKS_ALLOW_PRIVATE=1: webhook URLs may be http and reach private addresses. */
    readonly webhookUrls: { readonly allowPrivate: boolean };
  };
  /** Webhook delivery (endpoints are per tenant, in the tenants file). */
  readonly webhooks: {
    /** How long a delivery is retried before it is kept as failed. */
    readonly retryPeriodMs: number;
    readonly backoffBaseMs: number;
    readonly backoffMaxMs: number;
    /** How long an instance's hold on an endpoint lasts unless renewed (takeover after a crash). */
    readonly leaseMs: number;
    /** How long a failed delivery stays listable and replayable before it is pruned. */
    readonly keepFailedMs: number;
  };
  /** Where request-rate buckets live: this process, or Redis (shared by every instance). */
  readonly rateLimiter: "embedded" | "redis";
  /** Largest request message accepted, in bytes. */
  readonly maxRequestBytes: number;
  /** Unary calls one instance works on at once; more are refused with UNAVAILABLE. */
  readonly maxCallsInFlight: number;
  /** TCP connections one client address may hold open; more are closed on accept. */
  readonly maxConnectionsPerAddress: number;
  /** Requests (HTTP/2 streams, HTTP/1.1 requests) one client address may have in flight. */
  readonly maxStreamsPerAddress: number;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
}

const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/**
 * For the entry points: a configuration error is reported, every problem on its own line, and
 * the process exits 2; anything else is thrown on.
 */
export function exitOnConfigError(error: unknown): never {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
  throw error;
}

export function loadConfig(env: Readonly<Record<string, string | undefined>>): Config {
  const problems: string[] = [];
  const text = (name: string, fallback: string): string => {
    const value = env[name];
    return value === undefined || value === "" ? fallback : value;
  };
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === "") return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${name}=${raw}: must be a whole number from ${min} to ${max}`);
      return fallback;
    }
    return value;
  };
  const oneOf = <T extends string>(name: string, fallback: T, allowed: readonly T[]): T => {
    const value = text(name, fallback);
    if (!allowed.includes(value as T)) {
      problems.push(`${name}=${value}: must be one of ${allowed.join(", ")}`);
      return fallback;
    }
    return value as T;
  };
  /** A comma-separated list, entries trimmed, empty ones dropped. */
  const list = (name: string, fallback: string): string[] =>
    text(name, fallback)
      .split(",")
      .map((entry) => entry.trim())
      .filter((entry) => entry !== "");
  const hostPorts = (name: string, fallback: string): readonly string[] => {
    const listed = list(name, fallback);
    if (listed.length === 0 || listed.some((entry) => !/^[A-Za-z0-9.\-:[\]]+$/.test(entry))) {
      problems.push(`${name}=${env[name]}: must be comma-separated host or host:port entries`);
    }
    return Object.freeze(listed);
  };
  const clusterNodes = (name: string): readonly string[] => {
    const listed = list(name, "");
    for (const node of listed) {
      const port = Number(/^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(node)?.[1]);
      if (!(port >= 1 && port <= 65_535)) {
        problems.push(`${name}: ${node} is not a host:port like 10.0.0.5:6379`);
      }
    }
    return Object.freeze(listed);
  };
  const origins = (name: string): readonly string[] => {
    const listed = list(name, "");
    for (const origin of listed) {
      // An origin has no path, no trailing slash and no wildcard: browsers send exactly this form.
      if (!/^https?:\/\/[^/]+$/.test(origin) || URL.parse(origin)?.origin !== origin) {
        problems.push(`${name}: ${origin} is not an origin like https://chat.example.com`);
      }
    }
    return Object.freeze(listed);
  };

  const config: Config = {
    host: text("RECEIPTS_HOST", "127.0.0.1"),
    port: integer("RECEIPTS_PORT", 8080, 0, 65_535),
    store: oneOf("RECEIPTS_STORE", "embedded", ["embedded", "cassandra"] as const),
    cassandra: {
      contactPoints: hostPorts("RECEIPTS_CASSANDRA_CONTACT_POINTS", "127.0.0.1:9042"),
      localDataCenter: text("RECEIPTS_CASSANDRA_LOCAL_DC", "datacenter1"),
      keyspace: text("RECEIPTS_CASSANDRA_KEYSPACE", "receipts"),
      replication: text(
        "RECEIPTS_CASSANDRA_REPLICATION",
        "{'class': 'SimpleStrategy', 'replication_factor': 1}",
      ),
      consistency: oneOf("RECEIPTS_CASSANDRA_CONSISTENCY", "LOCAL_QUORUM", consistencyLevels),
      serialConsistency: oneOf("RECEIPTS_CASSANDRA_SERIAL_CONSISTENCY", "LOCAL_SERIAL", [
        "LOCAL_SERIAL",
        "SERIAL",
      ] as const),
      cacheTtlMs: integer("RECEIPTS_REDIS_CACHE_TTL_SECONDS", 300, 1, 86_400) * 1000,
      cacheMaxSuspects: integer("RECEIPTS_REDIS_CACHE_MAX_SUSPECTS", 100_000, 1, 10_000_000),
      localCacheEntries: integer("RECEIPTS_CASSANDRA_LOCAL_CACHE_ENTRIES", 50_000, 0, 10_000_000),
      // At least twice the 1-s heartbeat; at most the 30 s after which a stalled writer takes a
      // new name anyway (src/store/cassandra/cassandra-outbox.ts).
      outboxLapseMs: integer("RECEIPTS_CASSANDRA_OUTBOX_LAPSE_SECONDS", 10, 2, 30) * 1000,
    },
    // Instances sharing a networked store need the Redis feed to see each other's changes.
    changeFeed: oneOf(
      "RECEIPTS_CHANGE_FEED",
      text("RECEIPTS_STORE", "embedded") === "embedded" ? "embedded" : "redis",
      ["embedded", "redis"] as const,
    ),
    redisUrl: text("RECEIPTS_REDIS_URL", "redis://127.0.0.1:6379"),
    redisClusterNodes: clusterNodes("RECEIPTS_REDIS_CLUSTER_NODES"),
    redisKeyPrefix: text("RECEIPTS_REDIS_KEY_PREFIX", "receipts:"),
    dataDir: text("RECEIPTS_DATA_DIR", ".data"),
    logLevel: oneOf("RECEIPTS_LOG_LEVEL", "info", logLevels),
    logFormat: oneOf("RECEIPTS_LOG_FORMAT", "auto", ["auto", "json", "pretty"] as const),
    watch: {
      retentionMs: integer("RECEIPTS_WATCH_RETENTION_SECONDS", 86_400, 60, 30 * 86_400) * 1000,
      heartbeatMs: integer("RECEIPTS_WATCH_HEARTBEAT_SECONDS", 15, 1, 3_600) * 1000,
      bufferLimit: integer("RECEIPTS_WATCH_BUFFER", 1_000, 1, 1_000_000),
      maxStreams: integer("RECEIPTS_MAX_STREAMS", defaultMaxStreams(), 1, 10_000_000),
      accessCheckMs: integer("RECEIPTS_WATCH_ACCESS_CHECK_SECONDS", 10, 1, 3_600) * 1000,
    },
    shutdownGraceMs: integer("RECEIPTS_SHUTDOWN_GRACE_SECONDS", 10, 0, 3_600) * 1000,
    maxCallMs: integer("RECEIPTS_MAX_CALL_SECONDS", 30, 1, 3_600) * 1000,
    erasure: {
      chunkRows: integer("RECEIPTS_ERASURE_CHUNK_ROWS", 1_000, 1, 100_000),
      callBudgetMs: integer("RECEIPTS_ERASURE_CALL_MS", 2_000, 0, 60_000),
    },
    shutdownDelayMs: integer("RECEIPTS_SHUTDOWN_DELAY_SECONDS", 0, 0, 300) * 1000,
    corsOrigins: origins("RECEIPTS_CORS_ORIGINS"),
    tenants: {
      file: env.RECEIPTS_TENANTS_FILE || undefined,
      json: env.RECEIPTS_TENANTS || undefined,
      pollIntervalMs: integer("RECEIPTS_TENANTS_POLL_SECONDS", 5, 1, 3_600) * 1000,
      webhookUrls: {
        allowPrivate: oneOf("RECEIPTS_WEBHOOKS_ALLOW_PRIVATE", "0", ["0", "1"] as const) === "1",
      },
    },
    webhooks: {
      retryPeriodMs:
        integer("RECEIPTS_WEBHOOKS_RETRY_PERIOD_SECONDS", 86_400, 1, 30 * 86_400) * 1000,
      backoffBaseMs: integer("RECEIPTS_WEBHOOKS_BACKOFF_BASE_MS", 1_000, 1, 60_000),
      backoffMaxMs: integer("RECEIPTS_WEBHOOKS_BACKOFF_MAX_SECONDS", 600, 1, 86_400) * 1000,
      leaseMs: integer("RECEIPTS_WEBHOOKS_LEASE_SECONDS", 15, 1, 300) * 1000,
      keepFailedMs: integer("RECEIPTS_WEBHOOKS_KEEP_FAILED_DAYS", 30, 1, 3_650) * 86_400_000,
    },
    rateLimiter: oneOf(
      "RECEIPTS_RATE_LIMITER",
      // Instances that share a change feed through Redis share their buckets there too.
      text(
        "RECEIPTS_CHANGE_FEED",
        text("RECEIPTS_STORE", "embedded") === "embedded" ? "embedded" : "redis",
      ) === "redis"
        ? "redis"
        : "embedded",
      ["embedded", "redis"] as const,
    ),
    maxRequestBytes: integer("RECEIPTS_MAX_REQUEST_BYTES", 1_048_576, 1_024, 67_108_864),
    maxCallsInFlight: integer("RECEIPTS_MAX_CALLS_IN_FLIGHT", 512, 1, 1_000_000),
    maxConnectionsPerAddress: integer("RECEIPTS_MAX_CONNECTIONS_PER_ADDRESS", 1_024, 1, 10_000_000),
    maxStreamsPerAddress: integer("RECEIPTS_MAX_STREAMS_PER_ADDRESS", 10_000, 1, 10_000_000),
  };
  if (
    config.tenants.file === undefined &&
    config.tenants.json === undefined &&
    !isLoopback(config.host)
  ) {
    problems.push(
      `RECEIPTS_HOST=${config.host}: without tenants (RECEIPTS_TENANTS_FILE or RECEIPTS_TENANTS) the service runs in development mode, without credentials, and listens on loopback only (127.0.0.1, ::1, localhost)`,
    );
  }
  if (!isValidKeyspace(config.cassandra.keyspace)) {
    problems.push(
      `RECEIPTS_CASSANDRA_KEYSPACE=${config.cassandra.keyspace}: must be lower-case letters, digits and _, starting with a letter`,
    );
  }
  // A CQL map literal: spliced into CREATE KEYSPACE, so nothing that could end the statement.
  if (!/^\{[^;{}]*\}$/.test(config.cassandra.replication.trim())) {
    problems.push(
      `RECEIPTS_CASSANDRA_REPLICATION=${config.cassandra.replication}: must be a CQL map like {'class': 'NetworkTopologyStrategy', 'datacenter1': 3}`,
    );
  }
  if (!/^rediss?:$/.test(URL.parse(config.redisUrl)?.protocol ?? "")) {
    problems.push(`RECEIPTS_REDIS_URL=${config.redisUrl}: must be a redis:// or rediss:// URL`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

/** Loopback addresses only: development mode must not be reachable from another machine. */
function isLoopback(host: string): boolean {
  if (host === "localhost" || host === "::1") return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Heap an idle WatchReceipts stream holds, rounded up from docs/streaming.md (38 KB). */
const heapPerStreamBytes = 40 * 1024;

/**
 * As many streams as half of this process's heap limit holds, so that an
 * instance refuses streams (RESOURCE_EXHAUSTED) before it runs out of memory;
 * the limit follows `--max-old-space-size` and the container's memory.
 */
export function defaultMaxStreams(): number {
  return Math.max(1_000, Math.floor(getHeapStatistics().heap_size_limit / 2 / heapPerStreamBytes));
}

// --- settings of the Cassandra backend, validated here and used as typed by the backend ---

export type Consistency = "ONE" | "LOCAL_ONE" | "QUORUM" | "LOCAL_QUORUM" | "EACH_QUORUM" | "ALL";
export type SerialConsistency = "SERIAL" | "LOCAL_SERIAL";

export const consistencyLevels: readonly Consistency[] = [
  "ONE",
  "LOCAL_ONE",
  "QUORUM",
  "LOCAL_QUORUM",
  "EACH_QUORUM",
  "ALL",
];

const keyspacePattern = /^[a-z][a-z0-9_]{0,47}$/;

/** Keyspace names are spliced into CQL: only plain lower-case identifiers. */
export function isValidKeyspace(name: string): boolean {
  return keyspacePattern.test(name);
}
