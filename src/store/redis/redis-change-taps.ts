import type { Redis } from "ioredis";
import type { PositionedChange } from "../../domain/model.js";
import type { Logger } from "../../logger.js";
import { callRedis, type RedisChangeLog } from "./redis-change-log.js";
import type { RedisClient } from "./redis-connection.js";
import { compareStreamIds, isStreamId } from "./stream-positions.js";

type Listener = (change: PositionedChange) => void;
type Bell = () => void;
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

/** The listeners of one tenant in this process and how far they have been served. */
interface Tap {
  readonly tenant: string;
  readonly channel: string;
  readonly listeners: Map<Listener, Interrupted | undefined>;
  /** Rung on every ring of the doorbell and every append here; never handed changes. */
  readonly bells: Map<Bell, Interrupted | undefined>;
  /**
   * Id of the last change handed to the listeners; undefined until the start is known. A tap
   * with bells only reads nothing, so its cursor is known again when a listener comes.
   */
  cursor: string | undefined;
  /** Resolves once the doorbell's SUBSCRIBE was answered (or failed and was logged). */
  readonly subscribed: Promise<unknown>;
  pumping: boolean;
  again: boolean;
  retry: NodeJS.Timeout | undefined;
  /** Whether the last read failed: an outage is logged once per tap, not once per retry. */
  failing: boolean;
}

/**
 * Live delivery of the Redis change feed in this process: one tap per tenant with listeners
 * here, subscribed to the tenant's doorbell; on a ring it reads the log after the last id it
 * handed out and gives the entries to its listeners in id order (RedisChangeFeed says why).
 * While it has listeners it PINGs both connections every second; when Redis does not answer
 * within the read timeout, a read fails or the doorbell connection closes, it interrupts
 * them, so that their streams end with a resume token.
 */
export class RedisChangeTaps {
  readonly #log: RedisChangeLog;
  readonly #redis: RedisClient;
  readonly #subscriber: Redis;
  readonly #logger: Logger;
  readonly #readTimeoutMs: number;
  readonly #taps = new Map<string, Tap>();
  readonly #tapsByChannel = new Map<string, Tap>();
  readonly #probeTimer: NodeJS.Timeout;
  #closed = false;

  constructor(
    log: RedisChangeLog,
    redis: RedisClient,
    subscriber: Redis,
    options: { readonly logger: Logger; readonly readTimeoutMs: number },
  ) {
    this.#log = log;
    this.#redis = redis;
    this.#subscriber = subscriber;
    this.#logger = options.logger;
    this.#readTimeoutMs = options.readTimeoutMs;
    // A subscriber only listens: without a command in flight, a dead or stalled connection stays
    // silent, and so would the streams that wait on its doorbell.
    this.#probeTimer = setInterval(() => void this.#probe(), probeMs);
    this.#probeTimer.unref();

    // A lost doorbell connection may have dropped rings: streams here cannot be sure of the log.
    subscriber.on("close", () => {
      if (this.#closed || this.#taps.size === 0) return;
      this.#logger.warn("change feed lost its doorbell connection; ending open streams");
      this.#interruptAll(new Error("the change feed's doorbell connection closed"));
    });
    redis.on("ready", () => this.#catchUpAll());
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
      if (tap === undefined) return;
      for (const bell of tap.bells.keys()) bell();
      if (tap.cursor === undefined) return;
      if (isStreamId(lastId) && compareStreamIds(lastId, tap.cursor) <= 0) return;
      this.#pump(tap);
    });
  }

  listen(tenant: string, listener: Listener, interrupted?: Interrupted): () => void {
    const tap = this.#taps.get(tenant) ?? this.#openTap(tenant);
    // A tap reads only for listeners: the first one finds where they start.
    if (tap.listeners.size === 0) this.#startReading(tap);
    tap.listeners.set(listener, interrupted);
    return () => {
      tap.listeners.delete(listener);
      if (tap.listeners.size === 0) tap.cursor = undefined;
      this.#closeIfUnused(tap);
    };
  }

  ring(tenant: string, bell: Bell, interrupted?: Interrupted): () => void {
    const tap = this.#taps.get(tenant) ?? this.#openTap(tenant);
    tap.bells.set(bell, interrupted);
    return () => {
      tap.bells.delete(bell);
      this.#closeIfUnused(tap);
    };
  }

  /** Reads the tenant's log now, as a ring would make it: for this process's own appends. */
  poke(tenant: string): void {
    const tap = this.#taps.get(tenant);
    if (tap === undefined) return;
    for (const bell of tap.bells.keys()) bell();
    this.#pump(tap);
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#probeTimer);
    for (const tap of this.#taps.values()) clearTimeout(tap.retry);
    this.#taps.clear();
    this.#tapsByChannel.clear();
  }

  #openTap(tenant: string): Tap {
    const channel = this.#log.key(tenant, "bell");
    const tap: Tap = {
      tenant,
      channel,
      listeners: new Map(),
      bells: new Map(),
      subscribed: this.#subscriber.subscribe(channel).catch((error: unknown) => {
        this.#logger.warn({ err: error, tenant }, "change feed could not subscribe");
      }),
      cursor: undefined,
      pumping: false,
      again: false,
      retry: undefined,
      failing: false,
    };
    this.#taps.set(tenant, tap);
    this.#tapsByChannel.set(tap.channel, tap);
    return tap;
  }

  /** Finds where the tap's listeners start, then reads once the doorbell is on. */
  #startReading(tap: Tap): void {
    const { tenant } = tap;
    tap.cursor = undefined;
    // Sent now, before the caller's head() on the same connection: Redis answers in order, so
    // the tap starts at or before that head and a watcher misses nothing after it.
    const start = this.#log.lastId(tenant).catch((error: unknown) => {
      // Unknown start: replay the retained log; watchers skip what they already passed.
      this.#logger.warn({ err: error, tenant }, "change feed could not read the stream's head");
      return "0-0";
    });
    // Read once the doorbell is on, for what was appended before it could ring.
    void Promise.all([start, tap.subscribed]).then(([cursor]) => {
      if (this.#taps.get(tenant) !== tap || tap.listeners.size === 0) return;
      tap.cursor ??= cursor;
      this.#pump(tap);
    });
  }

  #closeIfUnused(tap: Tap): void {
    if (tap.listeners.size + tap.bells.size > 0 || this.#taps.get(tap.tenant) !== tap) return;
    this.#closeTap(tap);
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

  /** After a reconnection: rings may have been lost meanwhile. */
  #catchUpAll(): void {
    for (const tap of this.#taps.values()) {
      for (const bell of tap.bells.keys()) bell();
      this.#pump(tap);
    }
  }

  /** Hands every change after the tap's cursor to its listeners, in id order; one read at a time. */
  #pump(tap: Tap): void {
    if (tap.cursor === undefined || tap.listeners.size === 0) return;
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
          // Bounded, and on a cluster confirmed by a replica: a read held by a paused master
          // may be answered after its replica took over, from a history the new master does
          // not share; such a read is not used, and is retried where the cluster now says.
          const entries = await this.#log.entriesAfter(tap.tenant, tap.cursor as string, readBatch);
          if (!live()) return;
          tap.failing = false;
          for (const entry of entries) {
            tap.cursor = entry[0];
            for (const positioned of this.#log.decode([entry])) {
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

  /** Ends the following of every tap: their streams resume from their tokens. */
  #interruptAll(error: Error): void {
    for (const tap of this.#taps.values()) this.#interrupt(tap, error);
  }

  #interrupt(tap: Tap, error: Error): void {
    for (const interrupted of tap.listeners.values()) interrupted?.(error);
    for (const interrupted of tap.bells.values()) interrupted?.(error);
  }

  /** While watchers are here, both connections must answer a PING within the read timeout. */
  async #probe(): Promise<void> {
    if (this.#taps.size === 0 || this.#closed) return;
    try {
      await callRedis(
        () => Promise.all([this.#redis.ping(), this.#subscriber.ping()]),
        this.#readTimeoutMs,
      );
    } catch (error) {
      if (this.#closed) return;
      this.#logger.warn({ err: error }, "change feed: Redis does not answer; ending open streams");
      this.#interruptAll(error instanceof Error ? error : new Error(String(error)));
    }
  }
}
