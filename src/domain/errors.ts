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

/**
 * The access an open stream was granted has ended: its credential was revoked or expired
 * (`unauthenticated`), or its user left a conversation it watches (`permission_denied`). The
 * stream ends with it; `resumable` ones carry the stream's resume token, for the caller to
 * resume from with new credentials.
 */
export class AccessEndedError extends ReceiptError {
  readonly #reason: string;

  constructor(
    kind: "unauthenticated" | "permission_denied",
    reason: string,
    readonly resumable: boolean,
    field?: string,
  ) {
    super(kind, reason, field);
    this.#reason = reason;
  }

  /** What a stream whose position is `resumeToken` ends with. */
  endingAt(resumeToken: string): ReceiptError {
    return new ReceiptError(
      this.kind,
      this.#reason,
      this.field,
      this.resumable ? { "resume-token": resumeToken } : undefined,
    );
  }
}
