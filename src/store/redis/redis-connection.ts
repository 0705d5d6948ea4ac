import { Redis } from "ioredis";

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
export function connectRedis(url: string, options: RedisConnectionOptions = {}): Redis {
  const redis = new Redis(url, {
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
  readonly #redis: Redis;
  readonly #probeMs: number;
  #stalled = false;

  constructor(redis: Redis, probeMs = 250) {
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
        await this.#redis.ping();
        this.#stalled = false;
      } catch {
        // Still stalled (or down): probe again.
      }
    }
  }
}
