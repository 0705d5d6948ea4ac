import { invalidArgument } from "./errors.js";

/**
 * Page tokens are opaque to callers: base64url of the listing they belong to
 * (its scope) and the last key returned. A token presented to another listing,
 * or one that does not decode, is rejected rather than silently restarting.
 */
interface TokenBody {
  readonly v: 1;
  readonly s: string;
  readonly k: string;
}

export function encodePageToken(scope: string, lastKey: string): string {
  const body: TokenBody = { v: 1, s: scope, k: lastKey };
  return Buffer.from(JSON.stringify(body), "utf8").toString("base64url");
}

/** Returns the last key of the previous page, or undefined for the first page. */
export function decodePageToken(field: string, token: string, scope: string): string | undefined {
  if (token === "") return undefined;
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw invalidArgument(field, "is not a page token issued by this service");
  }
  if (
    typeof body !== "object" ||
    body === null ||
    (body as TokenBody).v !== 1 ||
    typeof (body as TokenBody).s !== "string" ||
    typeof (body as TokenBody).k !== "string"
  ) {
    throw invalidArgument(field, "is not a page token issued by this service");
  }
  if ((body as TokenBody).s !== scope) {
    throw invalidArgument(field, "belongs to another listing");
  }
  return (body as TokenBody).k;
}
