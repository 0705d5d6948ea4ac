import { durationMs } from "@bufbuild/protobuf/wkt";
import type { ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";

/** The field named by the error's google.rpc.BadRequest detail, as any gRPC client decodes it. */
export const fieldAtFault = (error: ConnectError | undefined): string | undefined =>
  error?.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field;

/** The delay of the error's google.rpc.RetryInfo detail, in milliseconds. */
export function retryDelayMs(error: ConnectError | undefined): number | undefined {
  const delay = error?.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return delay === undefined ? undefined : durationMs(delay);
}
