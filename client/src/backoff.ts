/** How long to wait between attempts: exponential, capped, with full jitter. */
export interface BackoffOptions {
  /** The cap of the first wait. */
  readonly firstDelayMs?: number;
  /** The cap no wait exceeds. */
  readonly maxDelayMs?: number;
  /** Uniform in [0, 1); replaceable in tests. */
  readonly random?: () => number;
}

/**
 * Full jitter: a uniform draw between 0 and min(max, first × 2^(attempt−1)),
 * so that clients cut off together do not come back together.
 */
export function backoffDelayMs(
  attempt: number,
  { firstDelayMs = 500, maxDelayMs = 15_000, random = Math.random }: BackoffOptions,
): number {
  const cap = Math.min(maxDelayMs, firstDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * cap);
}

/** Resolves after `ms`, or at once when `signal` aborts (it never rejects). */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}
