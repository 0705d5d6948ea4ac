import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { FixedDelayTimers } from "../domain/fixed-delay-timers.js";

/**
 * Gives every unary call at most `maxMs`, whatever deadline its client set or
 * did not set, and answers it as soon as its signal aborts (that limit, its
 * client's deadline or cancel, shutdown) with the abort's reason, even while
 * its handler still waits on a store call: the caller gets its answer, and the
 * handler, which checks the signal between store calls, stops at its next
 * step. Without the limit, a call without a deadline waits as long as a store
 * that has fallen behind takes: the 10-minute Cassandra soak of
 * docs/PERFORMANCE.md saw SendReceipts calls of 60 to 147 s. Streams are meant
 * to stay open and end through their own signal handling.
 */
export function callTimeLimitInterceptor(maxMs: number): Interceptor {
  // One timer for every call in flight (they all get the same limit), not one per call.
  const deadlines = new FixedDelayTimers(maxMs);
  return (next) => (request) => {
    if (request.stream) return next(request);
    const given = request.signal;
    if (given.aborted) return Promise.reject(ConnectError.from(given.reason, Code.Canceled));
    const limit = new AbortController();
    return new Promise((resolve, reject) => {
      const stop = (reason: unknown) => {
        limit.abort(reason);
        reject(ConnectError.from(reason, Code.Canceled));
      };
      // Linked by hand: AbortSignal.any costs a composite signal and weak references per call.
      const follow = () => stop(given.reason);
      given.addEventListener("abort", follow, { once: true });
      const expiry = deadlines.start(() =>
        stop(
          new ConnectError(
            `the service gives a call at most ${maxMs} ms; retry, or send less per call`,
            Code.DeadlineExceeded,
          ),
        ),
      );
      const settled = () => {
        expiry.cancel();
        given.removeEventListener("abort", follow);
      };
      next({ ...request, signal: limit.signal }).then(
        (response) => {
          settled();
          resolve(response);
        },
        (reason: unknown) => {
          settled();
          reject(reason);
        },
      );
    });
  };
}
