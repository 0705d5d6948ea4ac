import { type ChainableCommander, Cluster } from "ioredis";
import { StoreUnavailableError } from "../../domain/errors.js";
import { type PositionedChange, type ReceiptChange, withReadCount } from "../../domain/model.js";
import type { Logger } from "../../logger.js";
import { ChangeLogExpiredError } from "../change-feed.js";
import { appendArgs, appendScript } from "./change-log-append-script.js";
import type { RedisClient } from "./redis-connection.js";
import { confirmedByReplica } from "./replica-confirmed.js";
import { compareStreamIds } from "./stream-positions.js";

export interface RedisChangeLogOptions {
  readonly keyPrefix: string;
  readonly retentionMs: number;
  readonly logger: Logger;
  readonly publishTimeoutMs: number;
  readonly readTimeoutMs: number;
  readonly clock: () => number;
}

/** A stream entry as XRANGE returns it: its id and its fields, name then value. */
export type StreamEntry = [id: string, fields: string[]];

/** The ioredis options that register the append script on a connection. */
export const changeLogScripts = { appendChanges: { numberOfKeys: 2, lua: appendScript } };

/** The append script as ioredis adds it to a connection and a pipeline. */
interface AppendCommand {
  appendChanges(
    stream: string,
    trimmedThrough: string,
    cutoff: string,
    channel: string,
    statePrefix: string,
    stateTtlMs: string,
    ...changes: string[]
  ): unknown;
}

/**
 * KEYS[1] stream, KEYS[2] trimmed-through id; ARGV[1] the exclusive start, ARGV[2] a count.
 * One script, since a trim between the two reads could otherwise hide a gap. Sent whole
 * (EVAL, not EVALSHA): a script missing from a node's cache would be sent again after the
 * pipeline's WAIT, and so read after the fence that confirms it.
 */
const readAfterScript = `return {redis.call('GET', KEYS[2]), redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])}`;

/**
 * The tenants' change logs in Redis (one stream each; see RedisChangeFeed for the keys):
 * appending, reading and forgetting, each bounded by a timeout. On a Redis Cluster every
 * command that hands out a position counts only once a replica holds what it read or wrote
 * (see confirmedByReplica).
 */
export class RedisChangeLog {
  readonly #redis: RedisClient;
  readonly #options: RedisChangeLogOptions;

  constructor(redis: RedisClient, options: RedisChangeLogOptions) {
    this.#redis = redis;
    this.#options = options;
  }

  /**
   * Appends `changes` after trimming the retention window; one id per change, null for a
   * change the log already announced. Rings the tenant's doorbell.
   */
  async append(tenant: string, changes: readonly ReceiptChange[]): Promise<(string | null)[]> {
    const cutoff = Math.max(0, Math.floor(this.#options.clock() - this.#options.retentionMs));
    const [ids] = await this.#run(
      tenant,
      (commands) =>
        commands.appendChanges(
          this.key(tenant, "changes"),
          this.key(tenant, "trimmed-through"),
          String(cutoff),
          this.key(tenant, "bell"),
          this.#statePrefix(tenant),
          String(Math.max(1, Math.ceil(this.#options.retentionMs))),
          ...changes.flatMap(appendArgs),
        ),
      this.#options.publishTimeoutMs,
    );
    return ids as (string | null)[];
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
    const replies = await callRedis(() => pipeline.exec(), this.#options.publishTimeoutMs);
    const failed = replies?.find(([error]) => error !== null)?.[0];
    if (failed) throw failed;
  }

  /** Changes after `position`; ChangeLogExpiredError when some after it were trimmed. */
  async readAfter(tenant: string, position: string, limit: number): Promise<PositionedChange[]> {
    const [reply] = await this.#read(tenant, (commands) =>
      commands.eval(
        readAfterScript,
        2,
        this.key(tenant, "changes"),
        this.key(tenant, "trimmed-through"),
        `(${position}`,
        limit,
      ),
    );
    const [trimmedThrough, entries] = reply as [string | null, StreamEntry[]];
    if (trimmedThrough !== null && compareStreamIds(position, trimmedThrough) < 0) {
      throw new ChangeLogExpiredError(`changes after position ${position} are no longer kept`);
    }
    return this.decode(entries);
  }

  /** Entries after `cursor`, at most `count`, undecoded: a reader moves past unreadable ones. */
  async entriesAfter(tenant: string, cursor: string, count: number): Promise<StreamEntry[]> {
    const [entries] = await this.#read(tenant, (commands) =>
      commands.xrange(this.key(tenant, "changes"), `(${cursor}`, "+", "COUNT", count),
    );
    return entries as StreamEntry[];
  }

  /** Id of the tenant's newest entry, "0-0" for an empty log. */
  async lastId(tenant: string): Promise<string> {
    const [entries] = await this.#read(tenant, (commands) =>
      commands.xrevrange(this.key(tenant, "changes"), "+", "-", "COUNT", 1),
    );
    return (entries as StreamEntry[])[0]?.[0] ?? "0-0";
  }

  /** The changes of `entries`, with the counts the log announced; unreadable ones skipped. */
  decode(entries: readonly StreamEntry[]): PositionedChange[] {
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
        this.#options.logger.error(
          { err: error, position },
          "change feed skipped an unreadable entry",
        );
      }
    }
    return changes;
  }

  key(tenant: string, what: "changes" | "trimmed-through" | "bell" | "fence"): string {
    return `${this.#options.keyPrefix}feed:{${tenant}}:${what}`;
  }

  /**
   * A read bounded by the read timeout. On a cluster, a read held by a paused master may be
   * answered after its replica took over, from a history the new master does not share: it
   * is used only once a replica acknowledged the fence written after it.
   */
  #read(tenant: string, commands: (pipeline: ChainableCommander & AppendCommand) => void) {
    return this.#run(tenant, commands, this.#options.readTimeoutMs);
  }

  /**
   * The commands in one pipeline, within `timeoutMs`: their replies, or the first error. On a
   * cluster, only once a replica has everything they wrote or read (confirmedByReplica).
   */
  #run(
    tenant: string,
    commands: (pipeline: ChainableCommander & AppendCommand) => void,
    timeoutMs: number,
  ): Promise<unknown[]> {
    const redis = this.#redis;
    const add = commands as (pipeline: ChainableCommander) => void;
    return callRedis(async () => {
      if (redis instanceof Cluster) {
        const waitMs = Math.max(1, Math.floor(timeoutMs / 2));
        return confirmedByReplica(redis, add, { fenceKey: this.key(tenant, "fence"), waitMs });
      }
      const pipeline = redis.pipeline();
      add(pipeline);
      const replies = (await pipeline.exec()) ?? [];
      const failed = replies.find(([error]) => error !== null)?.[0];
      if (failed) throw failed;
      return replies.map(([, reply]) => reply);
    }, timeoutMs);
  }

  #statePrefix(tenant: string): string {
    return `${this.#options.keyPrefix}feed:{${tenant}}:`;
  }
}

/**
 * `command` within `timeoutMs`. Redis errors that are not answers (connection lost, timeout)
 * mean "unavailable" (StoreUnavailableError).
 */
export async function callRedis<T>(command: () => Promise<T>, timeoutMs: number): Promise<T> {
  try {
    return await withTimeout(command(), timeoutMs);
  } catch (error) {
    if (error instanceof Error && error.name === "ReplyError") throw error;
    throw new StoreUnavailableError("the change feed cannot reach Redis", { cause: error });
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
