import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * Ends a unary call as soon as its signal aborts (deadline, client cancel,
 * shutdown) with the abort's reason, even while its handler still waits on a
 * store call: the caller gets its answer, and the handler, which checks the
 * signal between store calls, stops at its next step. Streams end through
 * their own signal handling.
 */
export function endOnAbortInterceptor(): Interceptor {
  return (next) => async (request) => {
    if (request.stream) return next(request);
    const { signal } = request;
    if (signal.aborted) throw ConnectError.from(signal.reason, Code.Canceled);
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(ConnectError.from(signal.reason, Code.Canceled));
      signal.addEventListener("abort", onAbort, { once: true });
      next(request)
        .then(resolve, reject)
        .finally(() => signal.removeEventListener("abort", onAbort));
    });
  };
}
