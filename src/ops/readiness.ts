import { Code, ConnectError } from "@connectrpc/connect";

/** A dependency the service needs to answer calls: the store, Redis, ... */
export interface HealthProbe {
  readonly name: string;
  /** Resolves when the dependency answers; rejects (or hangs) when it does not. */
  check(): Promise<unknown>;
}

export interface ReadinessState {
  readonly ready: boolean;
  /** True once shutdown began: the instance is finishing, not broken. */
  readonly draining: boolean;
  /** Probes that did not answer in time, with why. */
  readonly failing: Readonly<Record<string, string>>;
}

export interface ReadinessOptions {
  readonly probes: readonly HealthProbe[];
  /** How long a probe may take before it counts as failed. */
  readonly probeTimeoutMs?: number;
  /** How often open health watches re-check the probes. */
  readonly watchIntervalMs?: number;
}

/**
 * Whether this instance should receive calls: every probe answers and
 * shutdown has not begun. Health checks, /readyz and the drain interceptor
 * all ask here, so they always agree.
 */
export class Readiness {
  readonly #probes: readonly HealthProbe[];
  readonly #probeTimeoutMs: number;
  readonly #watchIntervalMs: number;
  readonly #wakeUps = new Set<() => void>();
  #inFlight: Promise<ReadinessState> | undefined;
  #draining = false;
  #closed = false;

  constructor(options: ReadinessOptions) {
    this.#probes = options.probes;
    this.#probeTimeoutMs = options.probeTimeoutMs ?? 1_000;
    this.#watchIntervalMs = options.watchIntervalMs ?? 5_000;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Runs every probe (concurrent callers share one round), unless draining. */
  check(): Promise<ReadinessState> {
    if (this.#draining) return Promise.resolve({ ready: false, draining: true, failing: {} });
    this.#inFlight ??= this.#probeAll().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  /** Shutdown began: not ready from now on, and every watcher hears it at once. */
  drain(): void {
    this.#draining = true;
    this.#wake();
  }

  /** Ends every open watch with UNAVAILABLE (after it sent the draining state). */
  close(): void {
    this.#draining = true;
    this.#closed = true;
    this.#wake();
  }

  /**
   * The readiness now, then every change, until `signal` aborts. Ends with
   * UNAVAILABLE once `close()` was called.
   */
  async *watch(signal: AbortSignal): AsyncGenerator<boolean> {
    let previous: boolean | undefined;
    for (;;) {
      const { ready } = await this.check();
      if (ready !== previous) {
        previous = ready;
        yield ready;
      }
      // Checked after sending, so that a watcher hears NOT_SERVING before the end.
      if (this.#closed) {
        throw new ConnectError("this instance is shutting down", Code.Unavailable);
      }
      if (signal.aborted) return;
      await this.#sleep(signal);
    }
  }

  async #probeAll(): Promise<ReadinessState> {
    const failing: Record<string, string> = {};
    await Promise.all(
      this.#probes.map(async (probe) => {
        const problem = await this.#probe(probe);
        if (problem !== undefined) failing[probe.name] = problem;
      }),
    );
    return { ready: Object.keys(failing).length === 0, draining: false, failing };
  }

  async #probe(probe: HealthProbe): Promise<string | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(
        () => resolve(`no answer within ${this.#probeTimeoutMs} ms`),
        this.#probeTimeoutMs,
      );
    });
    try {
      return await Promise.race([
        probe.check().then(
          () => undefined,
          (error: unknown) => (error instanceof Error ? error.message : String(error)),
        ),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  #sleep(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.#wakeUps.delete(done);
        resolve();
      };
      const timer = setTimeout(done, this.#watchIntervalMs);
      signal.addEventListener("abort", done);
      this.#wakeUps.add(done);
    });
  }

  #wake(): void {
    for (const wakeUp of [...this.#wakeUps]) wakeUp();
  }
}
