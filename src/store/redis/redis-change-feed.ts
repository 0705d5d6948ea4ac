import { Cluster, type Redis } from "ioredis";
import { StoreUnavailableError } from "../../domain/errors.js";
import { type PositionedChange, type ReceiptChange, withReadCount } from "../../domain/model.js";
import type { Logger } from "../../logger.js";
import { type ChangeFeed, ChangeLogExpiredError } from "../change-feed.js";
import { TurnSharedReads } from "../turn-shared-reads.js";
import {
  createNodeConnection,
  createRedisClient,
  type RedisClient,
  type RedisEndpoint,
} from "./redis-connection.js";

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

type Listener = (change: PositionedChange) => void;
type Interrupted = (error: Error) => void;

/** Changes read from the stream per round trip when catching up. */
const readBatch = 500;
/** Delay before retrying a catch-up that failed (Redis unreachable, timeout). */
const retryMs = 1_000;
/**
 * Interval of the health probe (a PING on each connection while this process has watchers): a
 * Redis that stalls or drops the doorbell is noticed within it plus the read timeout.
 */
const probeMs = 1_000;
const maxId = (1n << 64n) - 1n;
const positionPattern = /^(\d{1,20})-(\d{1,20})$/;

/**
 * Appends a batch to the tenant's stream atomically, after trimming what
 * left the retention window. Exact trimming (no `~`) so that the newest
 * trimmed id, kept in KEYS[2], is exactly the point before which resume
 * tokens can no longer be served; `max-deleted-entry-id` of XINFO does not
 * count trimmed entries. The doorbell carries the last id added.
 *
 * The oldest entry is looked at first: only when it has expired is the
 * newest expired one searched for. On Redis 7.0 that backward search
 * (XREVRANGE from the cutoff) walks the whole stream when no entry is older
 * than the cutoff, about 20 ms with 300,000 retained; when one is, it seeks.
 *
 * What the log announced lives beside it, one hash per message
 * (`…:m:<message>`: field `r:<reader>` per announced reader, `n` the highest
 * count) and per conversation (`…:h:<conversation>`: newest horizon per
 * reader), kept as long as the log: a receipt already announced appends
 * nothing, a count below the highest is raised to it (the entry's `n`
 * field), a horizon not after the newest appends nothing. A receipt's field
 * holds its entry id, so that a message's deletion (`d` set in its hash, once)
 * removes its receipt entries from the stream (XDEL) in the same script that
 * appends the deletion: a replay never shows them again, and a receipt of a
 * deleted message appends nothing. XDEL rather than skipping them on replay:
 * the entries are personal data the deletion must remove, and replays stay
 * one XRANGE without a look-up per entry. Their names are
 * built here under the stream's hash tag, so they live in its cluster slot.
 *
 * KEYS[1] stream, KEYS[2] trimmed-through id; ARGV[1] cutoff (ms),
 * ARGV[2] doorbell channel, ARGV[3] name prefix of the announced state,
 * ARGV[4] its lifetime (ms), then five per change: kind ('r' receipt, 'h'
 * horizon, 'd' deletion), message or conversation id (a deletion: its message
 * ids, one per line), reader id, count or horizon, payload.
 * Returns one id per change, nil for a change not appended.
 */
const appendScript = `
local cutoff = tonumber(ARGV[1])
if cutoff > 0 then
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #oldest > 0 and tonumber(string.match(oldest[1][1], '^(%d+)-')) < cutoff then
    local expired = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[1] .. '-0', '-', 'COUNT', 1)
    redis.call('SET', KEYS[2], expired[1][1])
    redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1] .. '-0')
  end
end
local ids = {}
local last = false
for i = 5, #ARGV, 5 do
  local id = false
  local value = tonumber(ARGV[i + 3])
  if ARGV[i] == 'r' then
    local state = ARGV[3] .. 'm:' .. ARGV[i + 1]
    if redis.call('HEXISTS', state, 'd') == 0
        and redis.call('HSETNX', state, 'r:' .. ARGV[i + 2], '1') == 1 then
      local count = math.max(tonumber(redis.call('HGET', state, 'n') or '0'), value)
      redis.call('HSET', state, 'n', count)
      redis.call('PEXPIRE', state, ARGV[4])
      id = redis.call('XADD', KEYS[1], '*', 'c', ARGV[i + 4], 'n', count)
      redis.call('HSET', state, 'r:' .. ARGV[i + 2], id)
    end
  elseif ARGV[i] == 'd' then
    local fresh = false
    for message in string.gmatch(ARGV[i + 1], '[^\\n]+') do
      local state = ARGV[3] .. 'm:' .. message
      if redis.call('HSETNX', state, 'd', '1') == 1 then
        fresh = true
        local fields = redis.call('HGETALL', state)
        for f = 1, #fields, 2 do
          if string.sub(fields[f], 1, 2) == 'r:' and fields[f + 1] ~= '1' then
            redis.call('XDEL', KEYS[1], fields[f + 1])
          end
        end
        redis.call('PEXPIRE', state, ARGV[4])
      end
    end
    if fresh then id = redis.call('XADD', KEYS[1], '*', 'c', ARGV[i + 4]) end
  else
    local state = ARGV[3] .. 'h:' .. ARGV[i + 1]
    local newest = redis.call('HGET', state, ARGV[i + 2])
    if not newest or tonumber(newest) < value then
      redis.call('HSET', state, ARGV[i + 2], ARGV[i + 3])
      redis.call('PEXPIRE', state, ARGV[4])
      id = redis.call('XADD', KEYS[1], '*', 'c', ARGV[i + 4])
    end
  end
  ids[#ids + 1] = id
  if id then last = id end
end
if last then redis.call('PUBLISH', ARGV[2], last) end
return ids
`;

interface FeedCommands {
  appendChanges(
    stream: string,
    trimmedThrough: string,
    cutoff: string,
    channel: string,
    statePrefix: string,
    stateTtlMs: string,
    ...changes: string[]
  ): Promise<(string | null)[]>;
}

/** The listeners of one tenant in this process and how far they have been served. */
interface Tap {
  readonly tenant: string;
  readonly channel: string;
  readonly listeners: Map<Listener, Interrupted | undefined>;
  /** Id of the last change handed to the listeners; undefined until the start is known. */
  cursor: string | undefined;
  pumping: boolean;
  again: boolean;
  retry: NodeJS.Timeout | undefined;
  /** Whether the last read failed: an outage is logged once per tap, not once per retry. */
  failing: boolean;
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
 * append script also runs on Redis Cluster.
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
  readonly #commands: FeedCommands;
  readonly #subscriber: Redis;
  readonly #prefix: string;
  readonly #retentionMs: number;
  readonly #logger: Logger;
  readonly #clock: () => number;
  readonly #publishTimeoutMs: number;
  readonly #readTimeoutMs: number;
  readonly #taps = new Map<string, Tap>();
  readonly #tapsByChannel = new Map<string, Tap>();
  /** head() calls of this event-loop turn, per tenant, answered by one read. */
  readonly #heads = new TurnSharedReads<string>();
  readonly #probeTimer: NodeJS.Timeout;
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
      scripts: { appendChanges: { numberOfKeys: 2, lua: appendScript } },
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
    this.#commands = redis as unknown as FeedCommands;
    this.#subscriber = subscriber;
    this.#prefix = options.keyPrefix;
    this.#retentionMs = options.retentionMs;
    this.#logger = options.logger;
    this.#clock = options.clock ?? Date.now;
    this.#publishTimeoutMs = options.publishTimeoutMs ?? 2_000;
    this.#readTimeoutMs = options.readTimeoutMs ?? 2_000;
    // A subscriber only listens: without a command in flight, a dead or stalled connection stays
    // silent, and so would the streams that wait on its doorbell.
    this.#probeTimer = setInterval(() => void this.#probe(), probeMs);
    this.#probeTimer.unref();

    let warned = false;
    const onError = (error: Error) => {
      // ioredis reports every failed reconnect attempt; one warning per outage is enough.
      if (!warned) this.#logger.warn({ err: error }, "change feed lost Redis; reconnecting");
      warned = true;
    };
    redis.on("error", onError);
    subscriber.on("error", onError);
    // A lost doorbell connection may have dropped rings: streams here cannot be sure of the log.
    subscriber.on("close", () => {
      if (this.#closed || this.#taps.size === 0) return;
      this.#logger.warn("change feed lost its doorbell connection; ending open streams");
      this.#interruptAll(new Error("the change feed's doorbell connection closed"));
    });
    redis.on("ready", () => {
      warned = false;
      this.#catchUpAll();
    });
    subscriber.on("ready", () => {
      // Renew every subscription (SUBSCRIBE is idempotent), then read what rang meanwhile.
      const channels = [...this.#tapsByChannel.keys()];
      if (channels.length > 0) {
        subscriber.subscribe(...channels).catch((error: unknown) => {
          this.#logger.warn({ err: error }, "change feed could not renew subscriptions");
        });
      }
      this.#catchUpAll();
    });
    subscriber.on("message", (channel: string, lastId: string) => {
      const tap = this.#tapsByChannel.get(channel);
      if (tap === undefined || tap.cursor === undefined) return;
      if (this.isPosition(lastId) && this.comparePositions(lastId, tap.cursor) <= 0) return;
      this.#pump(tap);
    });
  }

  async publish(tenant: string, changes: readonly ReceiptChange[]): Promise<PositionedChange[]> {
    if (changes.length === 0) return [];
    const cutoff = Math.max(0, Math.floor(this.#clock() - this.#retentionMs));
    const payloads = changes.map((change) => JSON.stringify(change));
    const args: Parameters<FeedCommands["appendChanges"]> = [
      this.#key(tenant, "changes"),
      this.#key(tenant, "trimmed-through"),
      String(cutoff),
      this.#key(tenant, "bell"),
      this.#statePrefix(tenant),
      String(Math.max(1, Math.ceil(this.#retentionMs))),
      ...changes.flatMap((change, i) => [...appendArgs(change), payloads[i] as string]),
    ];
    const ids = await this.#call(
      () =>
        this.#redis instanceof Cluster
          ? this.#appendReplicated(this.#redis, args)
          : this.#commands.appendChanges(...args),
      this.#publishTimeoutMs,
    );
    // Local listeners need not wait for the doorbell's round trip.
    const tap = this.#taps.get(tenant);
    if (tap !== undefined) this.#pump(tap);
    return changes.flatMap((change, i) => {
      const id = ids[i];
      return typeof id === "string" ? [{ position: id, change }] : [];
    });
  }

  /**
   * On a cluster, a change counts as logged once a replica has it too (WAIT, on the same
   * connection as the append). Else a master paused past its failover would, on waking, still
   * take appends and answer "already logged" to the outbox's retries, then drop it all when it
   * learns it was replaced: acknowledged receipts would never reach a watcher (seen in
   * test/redis-cluster-faults.test.ts). Without a replica the append stays pending in the outbox.
   */
  async #appendReplicated(
    cluster: Cluster,
    args: Parameters<FeedCommands["appendChanges"]>,
  ): Promise<(string | null)[]> {
    const pipeline = cluster.pipeline() as unknown as FeedCommands & {
      wait(replicas: number, timeoutMs: number): unknown;
      exec(): Promise<[Error | null, unknown][] | null>;
    };
    pipeline.appendChanges(...args);
    pipeline.wait(1, Math.max(1, Math.floor(this.#publishTimeoutMs / 2)));
    const [appended, replicated] = (await pipeline.exec()) ?? [];
    if (appended?.[0]) throw appended[0];
    if (replicated?.[0]) throw replicated[0];
    if (Number(replicated?.[1]) < 1)
      throw new Error("no replica acknowledged the change log's append");
    return appended?.[1] as (string | null)[];
  }

  async forgetReceipts(
    tenant: string,
    receipts: readonly { readonly messageId: string; readonly readerId: string }[],
  ): Promise<void> {
    if (receipts.length === 0) return;
    const pipeline = this.#redis.pipeline();
    for (const { messageId, readerId } of receipts) {
      pipeline.hdel(`${this.#statePrefix(tenant)}m:${messageId}`, `r:${readerId}`, "n");
    }
    const replies = await this.#call(() => pipeline.exec(), this.#publishTimeoutMs);
    const failed = replies?.find(([error]) => error !== null)?.[0];
    if (failed) throw failed;
  }

  async readAfter(tenant: string, position: string, limit: number): Promise<PositionedChange[]> {
    // One transaction: a trim between the two reads could otherwise hide a gap.
    const replies = await this.#call(
      () =>
        this.#redis
          .multi()
          .get(this.#key(tenant, "trimmed-through"))
          .xrange(this.#key(tenant, "changes"), `(${position}`, "+", "COUNT", limit)
          .exec(),
      this.#readTimeoutMs,
    );
    const [trimmedReply, entriesReply] = replies ?? [];
    if (trimmedReply?.[0] || entriesReply?.[0]) {
      throw trimmedReply?.[0] ?? entriesReply?.[0];
    }
    const trimmedThrough = trimmedReply?.[1] as string | null;
    if (trimmedThrough !== null && this.comparePositions(position, trimmedThrough) < 0) {
      throw new ChangeLogExpiredError(`changes after position ${position} are no longer kept`);
    }
    return this.#decode(entriesReply?.[1] as [string, string[]][]);
  }

  /**
   * One read answers every head() of the tenant made in the same event-loop turn: a burst of
   * reconnecting watchers costs one round trip, not one each. The read is sent after every
   * caller's listen(), so it never answers a position before their tap's start.
   */
  head(tenant: string): Promise<string> {
    return this.#heads.read(tenant, () =>
      this.#call(() => this.#lastId(tenant), this.#readTimeoutMs),
    );
  }

  listen(tenant: string, listener: Listener, interrupted?: Interrupted): () => void {
    let tap = this.#taps.get(tenant);
    if (tap === undefined) tap = this.#openTap(tenant);
    const opened = tap;
    opened.listeners.set(listener, interrupted);
    return () => {
      opened.listeners.delete(listener);
      if (opened.listeners.size === 0 && this.#taps.get(tenant) === opened) this.#closeTap(opened);
    };
  }

  comparePositions(a: string, b: string): number {
    const [aMs, aSeq] = parsePosition(a);
    const [bMs, bSeq] = parsePosition(b);
    if (aMs !== bMs) return aMs < bMs ? -1 : 1;
    if (aSeq !== bSeq) return aSeq < bSeq ? -1 : 1;
    return 0;
  }

  isPosition(position: string): boolean {
    const match = positionPattern.exec(position);
    return (
      match !== null && BigInt(match[1] as string) <= maxId && BigInt(match[2] as string) <= maxId
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#probeTimer);
    for (const tap of this.#taps.values()) clearTimeout(tap.retry);
    this.#taps.clear();
    this.#tapsByChannel.clear();
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

  #openTap(tenant: string): Tap {
    const tap: Tap = {
      tenant,
      channel: this.#key(tenant, "bell"),
      listeners: new Map(),
      cursor: undefined,
      pumping: false,
      again: false,
      retry: undefined,
      failing: false,
    };
    this.#taps.set(tenant, tap);
    this.#tapsByChannel.set(tap.channel, tap);
    // Sent now, before the caller's head() on the same connection: Redis answers in order, so
    // the tap starts at or before that head and a watcher misses nothing after it.
    const start = this.#lastId(tenant).catch((error: unknown) => {
      // Unknown start: replay the retained log; watchers skip what they already passed.
      this.#logger.warn({ err: error, tenant }, "change feed could not read the stream's head");
      return "0-0";
    });
    const subscribed = this.#subscriber.subscribe(tap.channel).catch((error: unknown) => {
      this.#logger.warn({ err: error, tenant }, "change feed could not subscribe");
    });
    // Read once the doorbell is on, for what was appended before it could ring.
    void Promise.all([start, subscribed]).then(([cursor]) => {
      if (this.#taps.get(tenant) !== tap) return;
      tap.cursor = cursor;
      this.#pump(tap);
    });
    return tap;
  }

  #closeTap(tap: Tap): void {
    clearTimeout(tap.retry);
    this.#taps.delete(tap.tenant);
    this.#tapsByChannel.delete(tap.channel);
    if (this.#closed) return;
    this.#subscriber.unsubscribe(tap.channel).catch((error: unknown) => {
      this.#logger.debug({ err: error, tenant: tap.tenant }, "change feed could not unsubscribe");
    });
  }

  #catchUpAll(): void {
    for (const tap of this.#taps.values()) this.#pump(tap);
  }

  /** Hands every change after the tap's cursor to its listeners, in id order; one read at a time. */
  #pump(tap: Tap): void {
    if (tap.cursor === undefined) return;
    if (tap.pumping) {
      tap.again = true;
      return;
    }
    tap.pumping = true;
    void this.#drain(tap).finally(() => {
      tap.pumping = false;
    });
  }

  async #drain(tap: Tap): Promise<void> {
    const live = () => !this.#closed && this.#taps.get(tap.tenant) === tap;
    try {
      do {
        tap.again = false;
        for (;;) {
          // Bounded: on a cluster, a read held by a paused master may be answered after its
          // replica took over, from a history the new master does not share; past the timeout
          // it is not used, and the read is retried where the cluster now says.
          const entries = await this.#call(
            () =>
              this.#redis.xrange(
                this.#key(tap.tenant, "changes"),
                `(${tap.cursor}`,
                "+",
                "COUNT",
                readBatch,
              ),
            this.#readTimeoutMs,
          );
          if (!live()) return;
          tap.failing = false;
          for (const entry of entries) {
            tap.cursor = entry[0];
            for (const positioned of this.#decode([entry])) {
              for (const listener of tap.listeners.keys()) listener(positioned);
            }
          }
          if (entries.length < readBatch) break;
        }
      } while (tap.again && live());
    } catch (error) {
      if (!live()) return;
      const log = { err: error, tenant: tap.tenant };
      if (tap.failing) this.#logger.debug(log, "change feed still cannot read changes");
      else this.#logger.warn(log, "change feed could not read changes; retrying every second");
      tap.failing = true;
      this.#interrupt(tap, error instanceof Error ? error : new Error(String(error)));
      clearTimeout(tap.retry);
      tap.retry = setTimeout(() => this.#pump(tap), retryMs);
      tap.retry.unref();
    }
  }

  #decode(entries: readonly [string, string[]][]): PositionedChange[] {
    const changes: PositionedChange[] = [];
    for (const [position, fields] of entries) {
      const payload = fields[fields.indexOf("c") + 1];
      const countAt = fields.indexOf("n");
      try {
        const change = JSON.parse(payload ?? "") as ReceiptChange;
        changes.push({
          position,
          // The count the log announced, which is never below an earlier one for the message.
          change:
            change.kind === "receipt" && countAt >= 0
              ? withReadCount(change, Number(fields[countAt + 1]))
              : change,
        });
      } catch (error) {
        this.#logger.error({ err: error, position }, "change feed skipped an unreadable entry");
      }
    }
    return changes;
  }

  async #lastId(tenant: string): Promise<string> {
    const [last] = await this.#redis.xrevrange(this.#key(tenant, "changes"), "+", "-", "COUNT", 1);
    return last?.[0] ?? "0-0";
  }

  #key(tenant: string, what: "changes" | "trimmed-through" | "bell"): string {
    return `${this.#prefix}feed:{${tenant}}:${what}`;
  }

  #statePrefix(tenant: string): string {
    return `${this.#prefix}feed:{${tenant}}:`;
  }

  /** Ends the following of every tap: their streams resume from their tokens. */
  #interruptAll(error: Error): void {
    for (const tap of this.#taps.values()) this.#interrupt(tap, error);
  }

  #interrupt(tap: Tap, error: Error): void {
    for (const interrupted of tap.listeners.values()) interrupted?.(error);
  }

  /** While watchers are here, both connections must answer a PING within the read timeout. */
  async #probe(): Promise<void> {
    if (this.#taps.size === 0 || this.#closed) return;
    try {
      await this.#call(
        () => Promise.all([this.#redis.ping(), this.#subscriber.ping()]),
        this.#readTimeoutMs,
      );
    } catch (error) {
      if (this.#closed) return;
      this.#logger.warn({ err: error }, "change feed: Redis does not answer; ending open streams");
      this.#interruptAll(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** Redis errors that are not answers (connection lost, timeout) mean "unavailable". */
  async #call<T>(command: () => Promise<T>, timeoutMs: number): Promise<T> {
    try {
      return await withTimeout(command(), timeoutMs);
    } catch (error) {
      if (error instanceof Error && error.name === "ReplyError") throw error;
      throw new StoreUnavailableError("the change feed cannot reach Redis", { cause: error });
    }
  }
}

/** The script's four arguments of a change before its payload (see appendScript). */
function appendArgs(change: ReceiptChange): [string, string, string, string] {
  switch (change.kind) {
    case "receipt":
      return [
        "r",
        change.receipt.message.messageId,
        // A private read and a later shown one of the same reader are two announcements.
        change.private === true ? `p:${change.readerId}` : change.readerId,
        String(change.receipt.readCount),
      ];
    case "horizon":
      return ["h", change.conversationId, change.readerId, String(change.readUpTo)];
    case "deletion":
      // Ids have no control characters (validate.ts): a newline separates them.
      return ["d", change.messages.map((m) => m.messageId).join("\n"), "", "0"];
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function parsePosition(position: string): [bigint, bigint] {
  const match = positionPattern.exec(position);
  if (match === null) throw new Error(`not a stream position: ${position}`);
  return [BigInt(match[1] as string), BigInt(match[2] as string)];
}
