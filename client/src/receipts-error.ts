import { durationMs } from "@bufbuild/protobuf/wkt";
import { type Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { BadRequestSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";

/** One request field at fault, from the error's google.rpc.BadRequest detail. */
export interface FieldViolation {
  /** Path of the field, e.g. `message_ids[3]`. */
  readonly field: string;
  readonly description: string;
}

/**
 * Every failed call of this client: a ConnectError (so connect's own helpers
 * keep working) with what the service says about it decoded.
 */
export class ReceiptsError extends ConnectError {
  /** The request field at fault, when the error is about one. */
  readonly field: string | undefined;
  readonly fieldViolations: readonly FieldViolation[];
  /** How long the service asks to wait before retrying (`retry-after-ms` or RetryInfo). */
  readonly retryAfterMs: number | undefined;
  /** Where a WatchReceipts stream ended by the service may resume. */
  readonly resumeToken: string | undefined;

  constructor(error: ConnectError) {
    super(error.rawMessage, error.code, error.metadata, undefined, error.cause ?? error);
    this.details = error.details;
    this.fieldViolations = error
      .findDetails(BadRequestSchema)
      .flatMap((detail) =>
        detail.fieldViolations.map(({ field, description }) => ({ field, description })),
      );
    this.field = this.fieldViolations[0]?.field;
    this.retryAfterMs = retryAfterMsOf(error);
    this.resumeToken = error.metadata.get("resume-token") ?? undefined;
  }

  /** The code as the Connect protocol spells it, e.g. `invalid_argument`. */
  get codeName(): string {
    return codeToString(this.code);
  }

  static override from(reason: unknown, code?: Code): ReceiptsError {
    if (reason instanceof ReceiptsError) return reason;
    return new ReceiptsError(ConnectError.from(reason, code));
  }

  // ConnectError answers instanceof for any error that looks like one; this class only for its own.
  static override [Symbol.hasInstance](value: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(ReceiptsError, value);
  }
}

function retryAfterMsOf(error: ConnectError): number | undefined {
  const header = Number(error.metadata.get("retry-after-ms") ?? Number.NaN);
  if (Number.isFinite(header) && header >= 0) return header;
  const delay = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return delay === undefined ? undefined : durationMs(delay);
}

/** Turns every failure of a call, or of a stream while it is read, into a ReceiptsError. */
export const typedErrors: Interceptor = (next) => async (request) => {
  let response: Awaited<ReturnType<typeof next>>;
  try {
    response = await next(request);
  } catch (error) {
    throw ReceiptsError.from(error);
  }
  if (!response.stream) return response;
  return { ...response, message: typedStream(response.message) };
};

async function* typedStream<T>(messages: AsyncIterable<T>): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    throw ReceiptsError.from(error);
  }
}
