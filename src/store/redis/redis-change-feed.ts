import { Cluster, type Redis } from "ioredis";
import { StoreUnavailableError } from "../../domain/errors.js";
import type { PositionedChange, ReceiptChange } from "../../domain/model.js";
import type { Logger } from "../../logger.js";
import type { ChangeFeed } from "../change-feed.js";
import { TurnSharedReads } from "../turn-shared-reads.js";
import { changeLogScripts, RedisChangeLog } from "./redis-change-log.js";
import { RedisChangeTaps } from "./redis-change-taps.js";
import {
  createNodeConnection,
  createRedisClient,
  type RedisClient,
  type RedisEndpoint,
} from "./redis-connection.js";
import { compareStreamIds, isStreamId } from "./stream-positions.js";

/** `url` is a `redis://` or `rediss://` URL; `clusterNodes` for a Redis Cluster. */
export interface RedisChangeFeedOptions extends RedisEndpoint {
  /** Starts every key and channel, so that deployments (and tests) can share one Redis. */
  readonly keyPrefix: string;
  readonly retentionMs: number;
  readonly logger: Logger;
  /** How long a publish may wait for Redis before it fails (its changes stay pending). */
  readonly publishTimeoutMs?: number;
  /**
   * How long a read (head, replay) or a health probe may wait for Redis: a stalled Redis
   * fails new streams and ends open ones (with their resume token) after this long.
   */
  readonly readTimeoutMs?: number;
  /**
   * How long a connection with commands in flight may receive nothing before it counts as
   * dead and is replaced; also bounds how long a dead subscriber connection goes unnoticed.
   */
  readonly socketTimeoutMs?: number;
  readonly clock?: () => number;
}

/**
 * The change feed on Redis, for several instances behind a load balancer.
 *
 * Log: one Redis Stream per tenant (`<prefix>feed:{<tenant>}:changes`), ids
 * `<ms>-<seq>` given by Redis, which are the positions. Streams, not Pub/Sub
 * alone, because resuming needs the log: XRANGE after a token replays exactly
 * what a client missed, and the ids give one total order per tenant that
 * every instance agrees on. Trimmed by time on every append; the newest
 * trimmed id is kept in `<prefix>feed:{<tenant>}:trimmed-through` to tell an
 * expired token from a quiet tenant. Both keys share a hash tag, so the
 * append script also runs on Redis Cluster. There every append, read and
 * head counts only once a replica holds what it wrote or read (`WAIT 1`;
 * see replica-confirmed.ts), so that no position handed out is missing
 * from the history of the replica that takes over. Appending is
 * RedisChangeLog (the script: change-log-append-script.ts), live delivery
 * RedisChangeTaps.
 *
 * Live delivery: Pub/Sub is only a doorbell (`<prefix>feed:{<tenant>}:bell`,
 * payload the newest id). On a ring, the process reads the stream after the
 * last id it delivered for that tenant and hands the entries to its
 * listeners in id order. Pub/Sub payloads from several publishers may arrive
 * out of id order, and a watcher drops any position not after the last one
 * it saw, so delivering payloads directly would silently lose updates;
 * reading the stream cannot. One subscriber connection per process,
 * subscribed only to tenants that have watchers here; rings that arrive
 * while a read is in flight coalesce into one more read. Blocking XREAD per
 * tenant would need a connection per tenant.
 *
 * Redis down or hung: `publish` fails after at most `publishTimeoutMs`
 * (StoreUnavailableError); nobody waits on it, since the changes stay
 * pending in the store's outbox until a later publish succeeds (see
 * ChangeAnnouncer). Reads fail with StoreUnavailableError (UNAVAILABLE)
 * after `readTimeoutMs`. While this process has watchers it PINGs both
 * connections every second; when Redis does not answer, or a read fails, or
 * the doorbell connection closes, every listener is interrupted, so its
 * stream ends with its resume token instead of waiting in silence for
 * updates that are not coming. A connection that stays silent with commands
 * in flight is replaced after `socketTimeoutMs`.
 *
 * Retention is measured on this process's clock against Redis-clock ids:
 * clock skew between them only shifts the window by the skew.
 */
export class RedisChangeFeed implements ChangeFeed {
  readonly #redis: RedisClient;
  readonly #subscriber: Redis;
  readonly #log: RedisChangeLog;
  readonly #taps: RedisChangeTaps;
  /** head() calls of this event-loop turn, per tenant, answered by one read. */
  readonly #heads = new TurnSharedReads<string>();
  #closed = false;

  /** Connects both connections; rejects when Redis cannot be reached at start. */
  static async open(options: RedisChangeFeedOptions): Promise<RedisChangeFeed> {
    const redis = createRedisClient(options, {
      lazyConnect: true,
      connectionName: "receipts-feed",
      // Fail fast while Redis is away. No per-command timeout: under a burst of new streams the
      // event loop may answer late, which is not Redis being down; a silent socket is.
      maxRetriesPerRequest: 1,
      socketTimeout: options.socketTimeoutMs ?? 10_000,
      scripts: changeLogScripts,
    });
    // Subscriptions wait for Redis however long it takes, then are renewed.
    const bell = { connectionName: "receipts-feed-bell", maxRetriesPerRequest: null };
    const subscriber =
      redis instanceof Cluster
        ? createNodeConnection(redis, options, {
            ...bell,
            lazyConnect: true,
            socketTimeout: options.socketTimeoutMs ?? 10_000,
          })
        : redis.duplicate(bell);
    const feed = new RedisChangeFeed(redis, subscriber, options);
    try {
      await Promise.all([redis.connect(), subscriber.connect()]);
    } catch (error) {
      redis.disconnect();
      subscriber.disconnect();
      throw new StoreUnavailableError(`cannot reach Redis for the change feed: ${String(error)}`, {
        cause: error,
      });
    }
    return feed;
  }

  private constructor(redis: RedisClient, subscriber: Redis, options: RedisChangeFeedOptions) {
    this.#redis = redis;
    this.#subscriber = subscriber;
    const readTimeoutMs = options.readTimeoutMs ?? 2_000;
    this.#log = new RedisChangeLog(redis, {
      keyPrefix: options.keyPrefix,
      retentionMs: options.retentionMs,
      logger: options.logger,
      clock: options.clock ?? Date.now,
      publishTimeoutMs: options.publishTimeoutMs ?? 2_000,
      readTimeoutMs,
    });
    // Listens to both connections' events: registered before the connections are made.
    this.#taps = new RedisChangeTaps(this.#log, redis, subscriber, {
      logger: options.logger,
      readTimeoutMs,
    });

    let warned = false;
    const onError = (error: Error) => {
      // ioredis reports every failed reconnect attempt; one warning per outage is enough.
      if (!warned) options.logger.warn({ err: error }, "change feed lost Redis; reconnecting");
      warned = true;
    };
    redis.on("error", onError);
    subscriber.on("error", onError);
    redis.on("ready", () => {
      warned = false;
    });
  }

  async publish(tenant: string, changes: readonly ReceiptChange[]): Promise<PositionedChange[]> {
    if (changes.length === 0) return [];
    const ids = await this.#log.append(tenant, changes);
    // Local listeners need not wait for the doorbell's round trip.
    this.#taps.poke(tenant);
    return changes.flatMap((change, i) => {
      const id = ids[i];
      return typeof id === "string" ? [{ position: id, change }] : [];
    });
  }

  forgetReceipts(
    tenant: string,
    receipts: readonly { readonly messageId: string; readonly readerId: string }[],
  ): Promise<void> {
    return this.#log.forgetReceipts(tenant, receipts);
  }

  readAfter(tenant: string, position: string, limit: number): Promise<PositionedChange[]> {
    return this.#log.readAfter(tenant, position, limit);
  }

  /**
   * One read answers every head() of the tenant made in the same event-loop turn: a burst of
   * reconnecting watchers costs one round trip, not one each. The read is sent after every
   * caller's listen(), so it never answers a position before their tap's start.
   */
  head(tenant: string): Promise<string> {
    return this.#heads.read(tenant, () => this.#log.lastId(tenant));
  }

  listen(
    tenant: string,
    listener: (change: PositionedChange) => void,
    interrupted?: (error: Error) => void,
  ): () => void {
    return this.#taps.listen(tenant, listener, interrupted);
  }

  ring(tenant: string, bell: () => void, interrupted?: (error: Error) => void): () => void {
    return this.#taps.ring(tenant, bell, interrupted);
  }

  comparePositions(a: string, b: string): number {
    return compareStreamIds(a, b);
  }

  isPosition(position: string): boolean {
    return isStreamId(position);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#taps.close();
    await Promise.all(
      [this.#redis, this.#subscriber].map(async (connection) => {
        // QUIT lets replies in flight arrive; a connection that is down has none to wait for.
        if (connection.status === "ready") {
          await Promise.race([connection.quit(), sleep(1_000)]).catch(() => undefined);
        }
        connection.disconnect();
      }),
    );
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());
