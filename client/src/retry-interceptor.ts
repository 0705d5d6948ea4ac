import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { type BackoffOptions, backoffDelayMs, sleep } from "./backoff.js";
import { ReceiptsError } from "./receipts-error.js";
import { RetryBudget } from "./retry-budget.js";

/**
 * The calls a retry cannot change the outcome of, by the contract: receipts
 * and horizons only ever add, re-tracking the same data is a no-op, reads read.
 * Membership changes are left out: a retried AddMembers landing after a later
 * RemoveMembers would add the user back.
 */
export const retryableProcedures: ReadonlySet<string> = new Set([
  "receipts.v1.ReadReceiptService/TrackMessages",
  "receipts.v1.ReadReceiptService/SendReceipts",
  "receipts.v1.ReadReceiptService/GetReceipts",
  "receipts.v1.ReadReceiptService/ListReadMembers",
  "receipts.v1.ReadReceiptService/MarkConversationRead",
  "receipts.v1.MembershipService/ListMembers",
  // Its progress is kept by the service: a retry goes on where the lost call got to.
  "receipts.v1.UserDataService/EraseUser",
  "receipts.v1.PrivacyService/GetReceiptSettings",
  "receipts.v1.PrivacyService/SetReceiptSettings",
  // Deleting twice deletes nothing more.
  "receipts.v1.MessageLifecycleService/DeleteMessages",
]);

export interface RetryOptions extends BackoffOptions {
  /** Attempts per call, the first included (default 4). */
  readonly maxAttempts?: number;
  /** Shared by every call of the client; pass one to share it wider. */
  readonly budget?: RetryBudget;
  /** A call the service asks to retry later than this (default 10 s) fails at once instead. */
  readonly maxRetryAfterMs?: number;
}

/**
 * Retries unary calls of `retryableProcedures` that failed with UNAVAILABLE,
 * or with RESOURCE_EXHAUSTED when the service said when to come back (a rate
 * limit, not a request too large). Waits what the service asks
 * (`retry-after-ms`, or google.rpc.RetryInfo), else backs off with full
 * jitter; never past the call's deadline or signal; within a retry budget.
 */
export function retryInterceptor(options: RetryOptions = {}): Interceptor {
  const maxAttempts = options.maxAttempts ?? 4;
  const maxRetryAfterMs = options.maxRetryAfterMs ?? 10_000;
  const budget = options.budget ?? new RetryBudget();
  const backoff = { firstDelayMs: 100, maxDelayMs: 5_000, ...options };
  return (next) => async (request) => {
    const procedure = `${request.service.typeName}/${request.method.name}`;
    if (request.stream || !retryableProcedures.has(procedure)) return next(request);
    for (let attempt = 1; ; attempt++) {
      try {
        const response = await next(request);
        budget.recordSuccess();
        return response;
      } catch (reason) {
        const error = ReceiptsError.from(reason);
        const transient =
          error.code === Code.Unavailable ||
          (error.code === Code.ResourceExhausted && error.retryAfterMs !== undefined);
        if (!transient || request.signal.aborted) throw error;
        if ((error.retryAfterMs ?? 0) > maxRetryAfterMs) throw error;
        if (!budget.spendOnFailure() || attempt >= maxAttempts) throw error;
        const jittered = backoffDelayMs(attempt, backoff);
        await sleep(Math.max(error.retryAfterMs ?? 0, jittered), request.signal);
        if (request.signal.aborted) throw deadlineOrCancel(request.signal, error);
      }
    }
  };
}

/** Why the wait was cut short: the call's own deadline or cancellation, with the last failure. */
function deadlineOrCancel(signal: AbortSignal, last: ReceiptsError): ReceiptsError {
  const reason = ConnectError.from(signal.reason, Code.Canceled);
  return new ReceiptsError(
    new ConnectError(
      `${reason.rawMessage} (while waiting to retry: ${last.rawMessage})`,
      reason.code,
      last.metadata,
      undefined,
      last,
    ),
  );
}
