import { type Code, ConnectError, type HandlerContext } from "@connectrpc/connect";

/**
 * Why a call's signals abort, made cheaply: every call aborts its signals when it ends, and an
 * abort reason is read only when a call was cut short. Node's `AbortController.abort()` without
 * a reason builds a DOMException and captures its stack; a ConnectError builds fetch Headers
 * for its metadata. Either, on every call, was among the largest functions of a GetReceipts
 * profile.
 */

/**
 * The reason of a call that simply ended: an AbortError without a stack, which
 * `ConnectError.from` turns into CANCELED with this message when someone reads it.
 */
export function callEnded(): Error {
  return withoutStack(() => {
    const ended = new Error("the call ended");
    ended.name = "AbortError";
    return ended;
  });
}

/** A ConnectError whose stack is not captured, for the rarer ways a call ends (resets). */
export function stackless(message: string, code: Code): ConnectError {
  return withoutStack(() => new ConnectError(message, code));
}

/**
 * A request gate (run by connect before the body is read) that gives the handler context's
 * `abort()` a reason when connect calls it without one: connect ends every call that way, once
 * for a Connect call and twice for a gRPC one. `abort` is not in the gate's declared type, but
 * connect hands the gate the context it later aborts; were that to change, calls would only
 * pay for the DOMException again (`test/call-end-reasons.test.ts` would say so).
 */
export function endCallsWithReason(context: HandlerContext): void {
  const controller = context as HandlerContext & { abort?: unknown };
  const abort = controller.abort;
  if (typeof abort !== "function") return;
  controller.abort = (reason?: unknown) => abort.call(context, reason ?? callEnded());
}

function withoutStack<T>(make: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}
