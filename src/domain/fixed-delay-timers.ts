/** One pending expiry; `cancel` is safe to call more than once, and after it fired. */
export interface PendingExpiry {
  cancel(): void;
}

interface Entry {
  readonly dueAt: number;
  readonly onExpire: () => void;
}

/**
 * Timers that all run for the same `delayMs` (a call's time limit, a request
 * body's): they expire in the order they were started, so one Node timer,
 * armed for the oldest, serves them all. Starting and cancelling one is a Set
 * insertion and deletion instead of a timer in Node's timer lists per call.
 * An expiry fires no earlier than `delayMs` after its start, and at most one
 * event-loop turn later than a timer of its own would.
 */
export class FixedDelayTimers {
  readonly #delayMs: number;
  /** Pending entries in the order they were started, which is the order they expire. */
  readonly #pending = new Set<Entry>();
  #timer: NodeJS.Timeout | undefined;

  constructor(delayMs: number) {
    this.#delayMs = delayMs;
  }

  get delayMs(): number {
    return this.#delayMs;
  }

  start(onExpire: () => void): PendingExpiry {
    const entry: Entry = { dueAt: performance.now() + this.#delayMs, onExpire };
    this.#pending.add(entry);
    if (this.#timer === undefined) this.#arm(this.#delayMs);
    return { cancel: () => this.#pending.delete(entry) };
  }

  #arm(inMs: number): void {
    // Never keeps the process alive by itself, as a call's own timer would not need to.
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, inMs));
    this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    const now = performance.now();
    const expired: Entry[] = [];
    for (const entry of this.#pending) {
      if (entry.dueAt > now) {
        this.#arm(entry.dueAt - now);
        break;
      }
      this.#pending.delete(entry);
      expired.push(entry);
    }
    for (const entry of expired) {
      try {
        entry.onExpire();
      } catch (error) {
        // Thrown where a timer of its own would throw, without stopping the other expiries.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
