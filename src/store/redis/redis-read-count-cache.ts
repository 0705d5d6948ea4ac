import { randomUUID } from "node:crypto";
import type { ReadCountCache, ReaderSource } from "../read-count-cache.js";
import { globLiteral, type RedisClient, StallGuard, unlinkMatching } from "./redis-connection.js";
import { SuspectEntries } from "./suspect-entries.js";

export interface RedisReadCountCacheOptions {
  /** Prefix of every key, so that several services (and tests) share one Redis. */
  readonly keyPrefix: string;
  /** Lifetime of an entry from the moment it was built; hits do not extend it. */
  readonly ttlMs: number;
  /** Lifetime of a rebuild in progress; one that outlives it is abandoned. */
  readonly rebuildTtlMs?: number;
  /** How many cold entries one call rebuilds at a time. */
  readonly rebuildConcurrency?: number;
  /** Entries marked suspect at most before every entry is dropped instead (default 100,000). */
  readonly maxSuspectEntries?: number;
  /** Told how many counts a lookup answered from Redis (hits) and had to rebuild (misses). */
  readonly onLookup?: (hits: number, misses: number) => void;
}

/**
 * Hot read counts in Redis, as the SET of reader ids of each message (its
 * count is SCARD - 1: the set also holds a sentinel member).
 *
 * Why the count stays exact:
 * - A set, not a counter: SADD is idempotent, so a receipt added twice (a
 *   client retry, a resent command after a reconnect, two racing first
 *   receipts) counts once, and a set rebuilt from Cassandra while receipts
 *   arrive converges to the union of both, which is the truth.
 * - An entry is either complete or absent. Receipts only add to an entry that
 *   exists (never create one); entries are created whole by a rebuild that
 *   fills a staging set, renamed into place at the end. Receipts stored in
 *   Cassandra before the rebuild began are read by it; receipts whose Redis
 *   update runs after it began go into the staging set (or the entry), so
 *   none is lost. A deletion drops entry, staging set and rebuild token; a
 *   rebuild whose token is gone cannot publish what it read before.
 * - The sentinel member is "\0" + the Redis server's run_id, checked inside
 *   every script. A restarted or failed-over server has a new run_id, so an
 *   entry from before (reloaded from a snapshot, or replicated late) is never
 *   trusted. Reader ids cannot contain control characters, so the sentinel
 *   never collides with one.
 * - A reader not added leaves that entry suspect: the add failed, or was
 *   never sent because Redis was away or stalled (on a cluster one stalled
 *   master stalls the whole connection, so entries on healthy masters miss
 *   readers too). This process drops the entry before using the cache for
 *   that message again, and retries until it did, so that other processes
 *   stop serving it as soon as Redis answers (they share the entry; a
 *   failover alone does not distrust one built on the new master). Entries
 *   expire after `ttlMs` whatever happens, which bounds what another process
 *   could serve should the drop keep failing.
 * Every Redis failure is a cache miss: the store then counts in Cassandra.
 */
export class RedisReadCountCache implements ReadCountCache {
  readonly #redis: RedisClient;
  readonly #guard: StallGuard;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #rebuildTtlMs: number;
  readonly #concurrency: number;
  readonly #onLookup: (hits: number, misses: number) => void;
  /** Entries that may miss a reader; never read before they are dropped. */
  readonly #suspects: SuspectEntries;
  /** Rebuilds running in this process, by entry, with the mark they started at. */
  readonly #rebuilds = new Map<
    string,
    { readonly startedAt: number; readonly done: Promise<number | undefined> }
  >();
  #clock = 0;
  readonly #onReady = () => void this.#suspects.dropAll();

  constructor(redis: RedisClient, options: RedisReadCountCacheOptions) {
    this.#redis = redis;
    this.#guard = new StallGuard(redis);
    this.#prefix = options.keyPrefix;
    this.#ttlMs = options.ttlMs;
    this.#rebuildTtlMs = options.rebuildTtlMs ?? 60_000;
    this.#concurrency = options.rebuildConcurrency ?? 8;
    this.#onLookup = options.onLookup ?? (() => {});
    this.#suspects = new SuspectEntries({
      drop: (entry) => {
        const keys = this.#keysOf(entry);
        return this.#scripts().rrDrop(keys.live, keys.staging, keys.token);
      },
      dropEverything: () => unlinkMatching(redis, `${globLiteral(this.#prefix)}rc:*`),
      maxMarks: options.maxSuspectEntries,
      // Not while stalled: every drop would wait out the command timeout; the retry timer waits.
      canTry: () => this.#guard.usable,
      onFailure: (error) => this.#guard.failed(error),
      forgetAfterMs: this.#ttlMs + this.#rebuildTtlMs,
    });
    for (const [name, lua] of Object.entries(scripts)) {
      redis.defineCommand(name, {
        numberOfKeys: keyCounts[name as ScriptName],
        lua: preamble + lua,
      });
    }
    redis.on("ready", this.#onReady);
  }

  async readCounts(
    tenant: string,
    messageIds: readonly string[],
    readers: (messageId: string) => ReaderSource,
  ): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    if (!(await this.#usable(tenant, messageIds))) {
      this.#onLookup(0, messageIds.length);
      return counts;
    }
    const ids = messageIds.filter((id) => !this.#suspects.has(this.#entry(tenant, id)));
    // One command per entry, not a pipeline: on a cluster the entries live in different slots.
    // Auto-pipelining still sends the commands of this turn in one write per node.
    const replies = await Promise.allSettled(
      ids.map((id) => this.#scripts().rrCount(this.#keys(tenant, id).live)),
    );
    const lost = replies.find(
      (reply): reply is PromiseRejectedResult =>
        reply.status === "rejected" && !isReplyError(reply.reason),
    );
    if (lost !== undefined) {
      this.#guard.failed(lost.reason);
      this.#onLookup(0, messageIds.length);
      return counts;
    }
    const cold: string[] = [];
    ids.forEach((id, i) => {
      const reply = replies[i];
      if (reply?.status === "fulfilled" && reply.value >= 0) counts.set(id, reply.value);
      else cold.push(id);
    });
    this.#onLookup(counts.size, messageIds.length - counts.size);
    let next = 0;
    const worker = async () => {
      while (next < cold.length) {
        const id = cold[next++] as string;
        const count = await this.#rebuild(tenant, id, readers(id), undefined);
        if (count !== undefined) counts.set(id, count);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, cold.length) }, worker));
    return counts;
  }

  async readerRecorded(
    tenant: string,
    messageId: string,
    readerId: string,
    readers: ReaderSource,
  ): Promise<number | undefined> {
    // Taken after the receipt is stored: a rebuild that starts later reads it.
    const storedAt = ++this.#clock;
    if (!(await this.#usable(tenant, [messageId]))) {
      // Another process may hold an entry built before this receipt: it is short by this reader.
      void this.#suspects.mark([this.#entry(tenant, messageId)]);
      return undefined;
    }
    const keys = this.#keys(tenant, messageId);
    let reply: number;
    try {
      reply = await this.#scripts().rrAdd(keys.live, keys.staging, readerId);
    } catch (error) {
      this.#guard.failed(error);
      // It may or may not have been added: the entry cannot be trusted any more.
      void this.#suspects.mark([this.#entry(tenant, messageId)]);
      return undefined;
    }
    if (reply >= 0) return reply;
    // -2: the reader went into a rebuild in progress, any rebuild will do;
    // -1: no entry, only a rebuild that starts after the receipt was stored will.
    return this.#rebuild(tenant, messageId, readers, reply === -2 ? undefined : storedAt);
  }

  async readersDeleted(tenant: string, messageIds: readonly string[]): Promise<void> {
    await this.#suspects.mark(messageIds.map((id) => this.#entry(tenant, id)));
  }

  async close(): Promise<void> {
    this.#redis.off("ready", this.#onReady);
    this.#suspects.close();
    await Promise.allSettled([...this.#rebuilds.values()].map((r) => r.done));
  }

  /** Rebuilds an entry, joining one in progress here if it started after `notBefore`. */
  #rebuild(
    tenant: string,
    messageId: string,
    readers: ReaderSource,
    notBefore: number | undefined,
  ): Promise<number | undefined> {
    const entry = this.#entry(tenant, messageId);
    const running = this.#rebuilds.get(entry);
    if (running !== undefined && (notBefore === undefined || running.startedAt > notBefore)) {
      return running.done;
    }
    const startedAt = ++this.#clock;
    const done = this.#runRebuild(tenant, messageId, readers).finally(() => {
      if (this.#rebuilds.get(entry)?.done === done) this.#rebuilds.delete(entry);
    });
    this.#rebuilds.set(entry, { startedAt, done });
    return done;
  }

  async #runRebuild(
    tenant: string,
    messageId: string,
    readers: ReaderSource,
  ): Promise<number | undefined> {
    const keys = this.#keys(tenant, messageId);
    const commands = this.#scripts();
    let token: string;
    try {
      const [kind, value] = await commands.rrBegin(
        keys.live,
        keys.staging,
        keys.token,
        randomUUID(),
        this.#rebuildTtlMs,
      );
      if (kind === 0) return Number(value);
      token = String(value);
    } catch (error) {
      this.#guard.failed(error);
      return undefined;
    }
    // Errors reading the source propagate: the caller's store call fails as it would without a cache.
    fill: for await (const page of readers()) {
      for (let i = 0; i < page.length; i += fillChunk) {
        try {
          const chunk = page.slice(i, i + fillChunk);
          const filled = await commands.rrFill(keys.staging, keys.token, token, ...chunk);
          if (filled === 0) break fill; // dropped by a deletion or expired: the finish tells which
        } catch (error) {
          this.#guard.failed(error);
          return undefined;
        }
      }
    }
    try {
      const count = await commands.rrFinish(
        keys.live,
        keys.staging,
        keys.token,
        token,
        this.#ttlMs,
      );
      return count >= 0 ? count : undefined;
    } catch (error) {
      this.#guard.failed(error);
      return undefined;
    }
  }

  /** False when Redis is not connected or a suspect entry among these cannot be dropped. */
  async #usable(tenant: string, messageIds: readonly string[]): Promise<boolean> {
    if (!this.#guard.usable) return false;
    if (this.#suspects.size === 0) return true;
    const suspect = () => messageIds.some((id) => this.#suspects.has(this.#entry(tenant, id)));
    if (!suspect()) return true;
    await this.#suspects.dropAll();
    return !suspect();
  }

  #entry(tenant: string, messageId: string): string {
    // Encoded so that no tenant/message pair can produce another's key, and
    // braces make the three keys of an entry one Redis Cluster hash slot.
    return `${this.#prefix}rc:{${encodeURIComponent(tenant)}/${encodeURIComponent(messageId)}}`;
  }

  #keys(tenant: string, messageId: string) {
    return this.#keysOf(this.#entry(tenant, messageId));
  }

  #keysOf(entry: string) {
    return { live: `${entry}:set`, staging: `${entry}:staging`, token: `${entry}:token` };
  }

  #scripts(): ScriptCommands {
    return this.#redis as unknown as ScriptCommands;
  }
}

/** Reader ids per SADD: well under what a Lua unpack() can take. */
const fillChunk = 1_000;

/** The server's run_id, and whether a set was built under it (else it is dropped). */
const preamble = `
local sentinel = '\\0' .. string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local function fresh(key)
  if redis.call('SISMEMBER', key, sentinel) == 1 then return true end
  redis.call('DEL', key)
  return false
end
`;

const scripts = {
  // KEYS: set. Count of a complete entry, or -1.
  rrCount: `
if fresh(KEYS[1]) then return redis.call('SCARD', KEYS[1]) - 1 end
return -1`,
  // KEYS: set, staging; ARGV: reader. Adds to whichever exists; never creates one.
  rrAdd: `
if fresh(KEYS[1]) then
  redis.call('SADD', KEYS[1], ARGV[1])
  return redis.call('SCARD', KEYS[1]) - 1
end
if fresh(KEYS[2]) then
  redis.call('SADD', KEYS[2], ARGV[1])
  return -2
end
return -1`,
  // KEYS: set, staging, token; ARGV: new token, staging ttl. {0, count} if complete,
  // else {1, token} of the rebuild to fill (joining one in progress).
  rrBegin: `
if fresh(KEYS[1]) then return {0, redis.call('SCARD', KEYS[1]) - 1} end
local token = redis.call('GET', KEYS[3])
if token and fresh(KEYS[2]) then return {1, token} end
redis.call('DEL', KEYS[2])
redis.call('SADD', KEYS[2], sentinel)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
return {1, ARGV[1]}`,
  // KEYS: staging, token; ARGV: token, reader ids. 0 when the rebuild was dropped.
  rrFill: `
if redis.call('GET', KEYS[2]) ~= ARGV[1] or not fresh(KEYS[1]) then return 0 end
redis.call('SADD', KEYS[1], unpack(ARGV, 2))
return 1`,
  // KEYS: set, staging, token; ARGV: token, ttl. Publishes the staging set; the count, or -1.
  rrFinish: `
if redis.call('GET', KEYS[3]) == ARGV[1] and fresh(KEYS[2]) then
  redis.call('RENAME', KEYS[2], KEYS[1])
  redis.call('DEL', KEYS[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return redis.call('SCARD', KEYS[1]) - 1
end
if fresh(KEYS[1]) then return redis.call('SCARD', KEYS[1]) - 1 end
return -1`,
  // KEYS: set, staging, token.
  rrDrop: `
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1`,
} as const;

type ScriptName = keyof typeof scripts;

const keyCounts: Record<ScriptName, number> = {
  rrCount: 1,
  rrAdd: 2,
  rrBegin: 3,
  rrFill: 2,
  rrFinish: 3,
  rrDrop: 3,
};

interface ScriptCommands {
  rrCount(live: string): Promise<number>;
  rrAdd(live: string, staging: string, readerId: string): Promise<number>;
  rrBegin(
    live: string,
    staging: string,
    token: string,
    newToken: string,
    ttlMs: number,
  ): Promise<[number, number | string]>;
  rrFill(
    staging: string,
    token: string,
    tokenValue: string,
    ...readerIds: string[]
  ): Promise<number>;
  rrFinish(
    live: string,
    staging: string,
    token: string,
    tokenValue: string,
    ttlMs: number,
  ): Promise<number>;
  rrDrop(live: string, staging: string, token: string): Promise<number>;
}

/** An answer from Redis (e.g. a script error), as opposed to no answer. */
function isReplyError(error: unknown): boolean {
  return error instanceof Error && error.name === "ReplyError";
}
