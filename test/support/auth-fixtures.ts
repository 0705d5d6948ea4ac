import { randomBytes, randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { type CryptoKey, SignJWT } from "jose";
import { expect } from "vitest";

/** A fresh server API key (43 characters of base64url). */
export const newApiKey = (): string => randomBytes(32).toString("base64url");

/** A tenant id no other test uses, so shared Redis keys never collide. */
export const uniqueTenant = (name: string): string => `${name}-${randomUUID().slice(0, 8)}`;

export interface MintOptions {
  readonly tenant: string;
  readonly sub: string;
  readonly key: Uint8Array | CryptoKey;
  readonly alg?: string;
  readonly kid?: string;
  /** Seconds from now; negative for an expired token. */
  readonly expiresIn?: number;
  /** Seconds from now of `iat`. */
  readonly issuedAt?: number;
  readonly issuer?: string;
  readonly audience?: string;
  /** Claims to leave out, to test that they are required. */
  readonly omit?: readonly ("exp" | "iat" | "sub" | "tenant")[];
}

/** Mints a user token the way a tenant's backend would, with jose. */
export async function mintToken(options: MintOptions): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const omit = new Set(options.omit ?? []);
  const claims: Record<string, unknown> = {};
  if (!omit.has("tenant")) claims.tenant = options.tenant;
  const jwt = new SignJWT(claims).setProtectedHeader({
    alg: options.alg ?? "HS256",
    ...(options.kid === undefined ? {} : { kid: options.kid }),
  });
  if (!omit.has("sub")) jwt.setSubject(options.sub);
  if (!omit.has("iat")) jwt.setIssuedAt(now + (options.issuedAt ?? 0));
  if (!omit.has("exp")) jwt.setExpirationTime(now + (options.expiresIn ?? 300));
  if (options.issuer !== undefined) jwt.setIssuer(options.issuer);
  if (options.audience !== undefined) jwt.setAudience(options.audience);
  return jwt.sign(options.key);
}

export const secretBytes = (secret: string): Uint8Array => new TextEncoder().encode(secret);

/** Call options carrying `Authorization: Bearer <credential>`. */
export const bearer = (credential: string): { headers: Record<string, string> } => ({
  headers: { authorization: `Bearer ${credential}` },
});

/** Resolves the ConnectError a call fails with (and fails the test if it succeeds). */
export async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  const outcome = await call.then(
    () => undefined,
    (reason: unknown) => ConnectError.from(reason),
  );
  expect(outcome, "expected the call to be refused").toBeInstanceOf(ConnectError);
  return outcome as ConnectError;
}

/** Asserts that a call fails with `code`; returns the error for further checks. */
export async function expectCode(call: Promise<unknown>, code: Code): Promise<ConnectError> {
  const error = await refusal(call);
  expect(Code[error.code], error.rawMessage).toBe(Code[code]);
  return error;
}

/**
 * Opens a server stream, resolves its first message and cancels the call (a client that only
 * stops reading would leave the stream open on the server). Rejects with the stream's error.
 */
export async function firstMessage<T>(open: (signal: AbortSignal) => AsyncIterable<T>): Promise<T> {
  const abort = new AbortController();
  try {
    for await (const message of open(abort.signal)) return message;
    throw new Error("stream ended without a message");
  } finally {
    abort.abort();
  }
}

/** RECEIPTS_TENANTS for one tenant with one API key and these limits. */
export const apiKeyTenantEnv = (
  tenant: { readonly id: string; readonly key: string },
  limits: Record<string, number>,
): string => JSON.stringify({ tenants: [{ id: tenant.id, apiKeys: [tenant.key], limits }] });
