import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { FixedDelayTimers } from "../domain/fixed-delay-timers.js";

/**
 * Gives every unary call at most `maxMs`, whatever deadline its client set or
 * did not set: past it the call's signal aborts with DEADLINE_EXCEEDED, so the
 * caller is answered (endOnAbortInterceptor) and the domain stops before its
 * next store call. Without it, a call without a deadline waits as long as a
 * store that has fallen behind takes: the 10-minute Cassandra soak of
 * docs/PERFORMANCE.md saw SendReceipts calls of 60 to 147 s. A shorter client
 * deadline still ends the call first. Streams are meant to stay open and are
 * left alone.
 */
export function callTimeLimitInterceptor(maxMs: number): Interceptor {
  // One timer for every call in flight (they all get the same limit), not one per call.
  const deadlines = new FixedDelayTimers(maxMs);
  return (next) => async (request) => {
    if (request.stream) return next(request);
    const given = request.signal;
    const limit = new AbortController();
    // Linked by hand: AbortSignal.any costs a composite signal and weak references per call.
    const follow = () => limit.abort(given.reason);
    if (given.aborted) follow();
    else given.addEventListener("abort", follow, { once: true });
    const expiry = deadlines.start(() =>
      limit.abort(
        new ConnectError(
          `the service gives a call at most ${maxMs} ms; retry, or send less per call`,
          Code.DeadlineExceeded,
        ),
      ),
    );
    try {
      return await next({ ...request, signal: limit.signal });
    } finally {
      expiry.cancel();
      given.removeEventListener("abort", follow);
    }
  };
}
