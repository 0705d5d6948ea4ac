import { Code, ConnectError } from "@connectrpc/connect";
import { FieldViolationSchema } from "../../gen/receipts/v1/receipts_pb.js";
import { ReceiptError, type ReceiptErrorKind, StoreUnavailableError } from "../domain/errors.js";
import type { Logger } from "../logger.js";

const codes: Record<ReceiptErrorKind, Code> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  permission_denied: Code.PermissionDenied,
  failed_precondition: Code.FailedPrecondition,
  out_of_range: Code.OutOfRange,
  resource_exhausted: Code.ResourceExhausted,
  unauthenticated: Code.Unauthenticated,
  unavailable: Code.Unavailable,
};

/**
 * The one place where failures become wire errors. Domain errors keep their
 * message and name the field (as text and as a FieldViolation detail);
 * anything unexpected is logged with its cause and reaches the caller as an
 * opaque INTERNAL. Whatever fails once the call's signal aborted (the client
 * left, its deadline passed) fails because of that: a request stream cut off
 * mid-read ("Premature close") is the client's doing, not a fault.
 */
export function toConnectError(
  error: unknown,
  logger: Logger,
  procedure: string,
  signal?: AbortSignal,
): ConnectError {
  if (error instanceof ConnectError) return error;
  if (signal?.aborted === true && !(error instanceof ReceiptError)) {
    return ConnectError.from(signal.reason, Code.Canceled);
  }
  if (error instanceof ReceiptError) {
    const details =
      error.field === undefined
        ? []
        : [
            {
              desc: FieldViolationSchema,
              value: { field: error.field, description: error.message },
            },
          ];
    return new ConnectError(error.message, codes[error.kind], error.meta, details);
  }
  if (error instanceof StoreUnavailableError) {
    logger.warn({ err: error, procedure }, "store unavailable");
    return new ConnectError(
      "the store is unavailable; nothing was recorded, retry",
      Code.Unavailable,
    );
  }
  // A handler stopped by its call's signal (client gone, no reason given): not a fault.
  if (error instanceof Error && error.name === "AbortError") {
    return new ConnectError("the call was cancelled", Code.Canceled);
  }
  logger.error({ err: error, procedure }, "unexpected error");
  return new ConnectError("internal error", Code.Internal);
}
