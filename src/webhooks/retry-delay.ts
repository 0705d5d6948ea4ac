/**
 * Exponential backoff with full jitter: a random wait between 0 and
 * min(max, base * 2^(attempt-1)), so that many senders retrying after the
 * same outage spread out instead of arriving together.
 */
export function retryDelayMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 40));
  return Math.floor(random() * ceiling);
}
