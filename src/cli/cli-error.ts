import { Code } from "@connectrpc/connect";

/** Exit codes of the `receipts` command; documented in docs/operations.md. */
export const exitCodes = {
  ok: 0,
  /** The server answered with an error (bad input, not found, permission denied, ...). */
  rpcError: 1,
  /** The command line is wrong. */
  usage: 2,
  /** The server could not be reached, is shutting down, or did not answer in time. */
  unavailable: 3,
  /** The input file cannot be read or holds a bad line. */
  badInput: 4,
} as const;

/** A failure the CLI reports in one line and exits with. */
export class CliError extends Error {
  override readonly name = "CliError";

  constructor(
    message: string,
    readonly exitCode: number,
    /** The RPC's status code (as in Connect's JSON, e.g. "not_found") when a call failed. */
    readonly code?: string,
  ) {
    super(message);
  }
}

/** Server unreachable, shutting down or too slow (retry later) versus the call refused. */
export const exitCodeFor = (code: Code): number =>
  code === Code.Unavailable || code === Code.DeadlineExceeded
    ? exitCodes.unavailable
    : exitCodes.rpcError;

export const usageError = (message: string): CliError => new CliError(message, exitCodes.usage);
