import type { ThroughputResult } from "./load-tasks.js";

/** Runs `work` from `concurrency` loops until `next` runs out or the time is up. */
export async function closedLoop(
  concurrency: number,
  durationMs: number,
  work: () => Promise<number> | undefined,
): Promise<ThroughputResult> {
  const latenciesMs: number[] = [];
  let calls = 0;
  let receipts = 0;
  let errors = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const deadline = started + durationMs;
  const loop = async () => {
    while (performance.now() < deadline) {
      const at = performance.now();
      const call = work();
      if (call === undefined) return;
      try {
        // Not `receipts += await call`: that reads `receipts` before awaiting, so concurrent
        // loops would overwrite each other's additions.
        const acknowledged = await call;
        receipts += acknowledged;
        calls += 1;
        latenciesMs.push(performance.now() - at);
      } catch (error) {
        errors += 1;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  const elapsedMs = performance.now() - started;
  return { calls, receipts, errors, elapsedMs, latenciesMs, ...(firstError ? { firstError } : {}) };
}
