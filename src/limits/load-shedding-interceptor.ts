import { Code, type Interceptor } from "@connectrpc/connect";
import { retryLaterError } from "../api/error-mapping.js";

/** How long a refused caller is told to wait: long enough for calls in flight to drain. */
const retryAfterMs = 200;

/**
 * Bounds the unary calls one instance works on at once. When the store falls
 * behind, calls would otherwise pile up in memory without bound: the
 * 10-minute Cassandra soak of docs/PERFORMANCE.md reached latencies of a
 * minute and 2.6 GB of RSS before the driver started refusing. Past the bound
 * a call is refused at once with UNAVAILABLE and `retry-after-ms`, before any
 * work (nothing was written), so the call may be retried after it. Streams are capped
 * on their own (RECEIPTS_MAX_STREAMS).
 */
export function loadSheddingInterceptor(
  maxCallsInFlight: number,
  onShed: () => void = () => {},
): Interceptor {
  let inFlight = 0;
  const done = () => {
    inFlight -= 1;
  };
  return (next) => (request) => {
    if (request.method.methodKind !== "unary") return next(request);
    if (inFlight >= maxCallsInFlight) {
      onShed();
      return Promise.reject(
        retryLaterError(
          `this instance is working on ${maxCallsInFlight} calls; retry shortly`,
          Code.Unavailable,
          retryAfterMs,
        ),
      );
    }
    inFlight += 1;
    let answer: ReturnType<typeof next>;
    try {
      answer = next(request);
    } catch (error) {
      done();
      return Promise.reject(error);
    }
    answer.then(done, done);
    return answer;
  };
}
