/**
 * Why a request failed, in the domain's words. The transport maps each kind to
 * one gRPC/Connect code (src/api/error-mapping.ts); the domain never names
 * transport codes itself.
 */
export type ReceiptErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "permission_denied"
  | "failed_precondition"
  | "out_of_range"
  | "resource_exhausted"
  | "unauthenticated"
  | "unavailable";

export class ReceiptError extends Error {
  override readonly name = "ReceiptError";

  constructor(
    readonly kind: ReceiptErrorKind,
    message: string,
    /** The request field at fault, e.g. `message_ids[3]`. */
    readonly field?: string,
    /** Extra facts for the caller, e.g. a resume token; sent as response metadata. */
    readonly meta?: Readonly<Record<string, string>>,
  ) {
    super(field === undefined ? message : `${field}: ${message}`);
  }
}

export const invalidArgument = (field: string, message: string): ReceiptError =>
  new ReceiptError("invalid_argument", message, field);

/** A group message above the tenant's readMembers.maxGroupSize: counts only, no member lists. */
export const memberListsWithheld = (size: number, max: number, field: string): ReceiptError =>
  new ReceiptError(
    "failed_precondition",
    `the group had ${size} members when the message was sent; member lists are kept for groups of up to ${max} (use GetReceipts for the counts)`,
    field,
  );

/** A store that cannot be reached: nothing was recorded, the caller may retry. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}

/** The change log no longer holds every change after a position (trimmed by retention). */
export class ChangeLogExpiredError extends Error {
  override readonly name = "ChangeLogExpiredError";
}
