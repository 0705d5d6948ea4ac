import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
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

/** Response metadata telling a refused caller how long to wait before retrying. */
export const retryAfterHeader = "retry-after-ms";

/**
 * The one place where failures become wire errors. Domain errors keep their
 * message and name the field (as text and as a google.rpc.BadRequest detail,
 * which generic gRPC tooling decodes); anything unexpected is logged with its
 * cause and reaches the caller as an opaque INTERNAL. Whatever fails once the
 * call's signal aborted (the client left, its deadline passed) fails because of
 * that: a request stream cut off mid-read ("Premature close") is the client's
 * doing, not a fault.
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
              desc: BadRequestSchema,
              value: {
                fieldViolations: [{ field: error.field, description: withoutField(error) }],
              },
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

/** The message without its `field: ` prefix: the violation names the field on its own. */
function withoutField(error: ReceiptError): string {
  const prefix = `${error.field}: `;
  return error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
}

/**
 * A call refused before any work, to be retried after `retryAfterMs`: the delay
 * travels both as `retry-after-ms` metadata and as a google.rpc.RetryInfo detail.
 */
export function retryLaterError(message: string, code: Code, retryAfterMs: number): ConnectError {
  return new ConnectError(message, code, { [retryAfterHeader]: String(retryAfterMs) }, [
    { desc: RetryInfoSchema, value: { retryDelay: durationFromMs(retryAfterMs) } },
  ]);
}
