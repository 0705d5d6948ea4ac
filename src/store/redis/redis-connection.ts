import { Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis";

/**
 * Where Redis is: one server (`url`), or a Redis Cluster reached through some of its nodes
 * (`clusterNodes`, `host:port`; the rest are discovered), with the URL's credentials and
 * scheme (`rediss:` means TLS) applied to every node.
 */
export interface RedisEndpoint {
  readonly url: string;
  readonly clusterNodes?: readonly string[];
}

/** A connection to one server or to a cluster: both speak the same commands. */
export type RedisClient = Redis | Cluster;

/**
 * The one place where Redis connections are made. On a cluster, `options` apply to the
 * connection to each node; what the cluster decides itself (offline queue, auto-pipelining,
 * scripts) is lifted to the cluster, and commands follow MOVED and failovers.
 */
export function createRedisClient(endpoint: RedisEndpoint, options: RedisOptions): RedisClient {
  const nodes = endpoint.clusterNodes ?? [];
  if (nodes.length === 0) return new Redis(endpoint.url, options);
  const { enableOfflineQueue, enableAutoPipelining, lazyConnect, scripts, ...perNode } = options;
  const clusterOptions: ClusterOptions = {
    redisOptions: { ...credentials(endpoint.url), ...perNode },
    enableOfflineQueue,
    enableAutoPipelining,
    lazyConnect,
    scripts,
    // A failed-over slot is asked again after the slots are re-read, not failed at once.
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    // Keep trying a cluster that is wholly away, as a single connection would.
    clusterRetryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 5), 2_000),
    // Notices a failover that no command has run into yet (e.g. a replica promoted).
    slotsRefreshInterval: 2_000,
  };
  return new Cluster(nodes.map(parseNode), clusterOptions);
}

/**
 * A plain connection to one node of the cluster, for Pub/Sub: PUBLISH reaches every node of
 * a cluster, so any node hears every doorbell. When its node goes away the connection moves
 * on to the next node the cluster knows (then the configured ones), so a dead node is not
 * waited for; the caller's 'ready' handler renews its subscriptions there.
 */
export function createNodeConnection(
  cluster: Cluster,
  endpoint: RedisEndpoint,
  options: RedisOptions,
): Redis {
  const configured = (endpoint.clusterNodes ?? []).map(parseNode);
  const candidates = () => {
    const known = cluster.nodes("all").map(({ options: { host, port } }) => ({ host, port }));
    return [...known, ...configured];
  };
  let turn = 0;
  const first = candidates()[0] ?? { host: "127.0.0.1", port: 6379 };
  const connection: Redis = new Redis({
    ...credentials(endpoint.url),
    ...options,
    host: first.host,
    port: first.port,
    retryStrategy: (attempt) => {
      // ioredis reads host and port from its options at each reconnect.
      const list = candidates();
      const next = list[++turn % Math.max(list.length, 1)];
      if (next !== undefined) Object.assign(connection.options, next);
      return Math.min(50 * 2 ** Math.min(attempt, 5), 1_000);
    },
  });
  return connection;
}

/** `host:port`, `[v6]:port`. */
function parseNode(node: string): { host: string; port: number } {
  const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(node);
  if (match === null) throw new Error(`not a host:port Redis node: ${node}`);
  return { host: match[1] as string, port: Number(match[2]) };
}

function credentials(url: string): RedisOptions {
  const parsed = URL.parse(url);
  if (parsed === null) return {};
  return {
    ...(parsed.username && { username: decodeURIComponent(parsed.username) }),
    ...(parsed.password && { password: decodeURIComponent(parsed.password) }),
    ...(parsed.protocol === "rediss:" && { tls: {} }),
  };
}

export interface RedisConnectionOptions {
  /** A command without a reply after this long fails (and the cache treats it as a miss). */
  readonly commandTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  /** Connection errors, e.g. for a rate-limited log line; they never reach callers otherwise. */
  readonly onError?: (error: Error) => void;
}

/**
 * A Redis connection for a cache: it never makes a caller wait for Redis.
 * While disconnected, commands fail at once instead of queueing; a command
 * cut off by a disconnect fails instead of being resent; the client keeps
 * reconnecting in the background for as long as the process runs.
 */
export function connectRedis(url: string, options?: RedisConnectionOptions): Redis;
export function connectRedis(
  endpoint: RedisEndpoint,
  options?: RedisConnectionOptions,
): RedisClient;
export function connectRedis(
  endpoint: string | RedisEndpoint,
  options: RedisConnectionOptions = {},
): RedisClient {
  const redis = createRedisClient(typeof endpoint === "string" ? { url: endpoint } : endpoint, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: options.commandTimeoutMs ?? 250,
    connectTimeout: options.connectTimeoutMs ?? 2_000,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2_000),
    // The commands of one event-loop turn (a SendReceipts call adds a reader to 10 messages'
    // entries) go out in one write: about a third less Redis CPU and a tenth less of the
    // service's per call in docs/PERFORMANCE.md. Commands queue while a batch is in flight.
    enableAutoPipelining: true,
  });
  // Without a listener an 'error' event would crash the process.
  redis.on("error", (error: Error) => options.onError?.(error));
  return redis;
}

/**
 * Whether a cache connection is worth a command now. A Redis that stalls
 * (paused, swapping, stopped with SIGSTOP) keeps its socket open, so every
 * command would wait out the command timeout: after the first timeout the
 * connection counts as stalled, callers skip it (a cache miss, a limit let
 * through) and one PING at a time probes it until it answers again. A stall
 * then costs the calls in flight when it began one timeout, not every call.
 */
export class StallGuard {
  readonly #redis: RedisClient;
  readonly #probeMs: number;
  #stalled = false;

  constructor(redis: RedisClient, probeMs = 250) {
    this.#redis = redis;
    this.#probeMs = probeMs;
  }

  get usable(): boolean {
    return this.#redis.status === "ready" && !this.#stalled;
  }

  /** Told of every failed command: a timeout marks the connection stalled. */
  failed(error: unknown): void {
    if (this.#stalled || !(error instanceof Error) || !/timed out/i.test(error.message)) return;
    this.#stalled = true;
    void this.#probe();
  }

  async #probe(): Promise<void> {
    while (this.#stalled) {
      await new Promise((resolve) => setTimeout(resolve, this.#probeMs).unref());
      if (this.#redis.status === "end") return;
      try {
        // On a cluster every master must answer: a stalled one holds a share of the keys.
        await Promise.all(mastersOf(this.#redis).map((node) => node.ping()));
        this.#stalled = false;
      } catch {
        // Still stalled (or down): probe again.
      }
    }
  }
}

/**
 * Deletes every key that matches `pattern`, on every master of a cluster: SCAN, which never
 * blocks the server for long, and one UNLINK per key (a cluster refuses one across slots).
 */
export async function unlinkMatching(redis: RedisClient, pattern: string): Promise<void> {
  await Promise.all(
    mastersOf(redis).map(async (server) => {
      let cursor = "0";
      do {
        const [next, keys] = await server.scan(cursor, "MATCH", pattern, "COUNT", 1_000);
        await Promise.all(keys.map((key) => server.unlink(key)));
        cursor = next;
      } while (cursor !== "0");
    }),
  );
}

/** The servers that hold the keys: every master of a cluster, or the one server. */
function mastersOf(redis: RedisClient): Redis[] {
  return redis instanceof Cluster ? redis.nodes("master") : [redis];
}

/** `text` matched literally in a SCAN or KEYS pattern. */
export function globLiteral(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}
