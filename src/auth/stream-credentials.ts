import { AccessEndedError } from "../domain/errors.js";
import {
  type CredentialIndex,
  type Verification,
  verifyCredentials,
} from "./credential-verifier.js";

/** What one open stream holds: the signal its access ends on, and the release when it closes. */
export interface StreamAccess {
  readonly signal: AbortSignal;
  release(): void;
}

interface Followed {
  readonly authorization: string | null;
  readonly tenant: string;
  readonly ended: AbortController;
}

const revoked = () =>
  new AccessEndedError(
    "unauthenticated",
    "the credentials this stream was opened with are no longer accepted; resume with valid ones and the resume token",
    true,
  );

const expired = () =>
  new AccessEndedError(
    "unauthenticated",
    "user token expired: mint a new one and resume with the resume token",
    true,
  );

/**
 * The credentials of open streams, which outlive the check made when they opened: a stream's
 * signal aborts (with an AccessEndedError) when its user token expires, or when a reload of the
 * tenants no longer accepts its credential (API key revoked, token key removed, tenant gone).
 */
export class StreamCredentials {
  readonly #credentials: () => CredentialIndex;
  readonly #open = new Set<Followed>();

  constructor(credentials: () => CredentialIndex) {
    this.#credentials = credentials;
  }

  get size(): number {
    return this.#open.size;
  }

  /** Follows a credential that verified for `tenant`, until `release`. */
  follow(
    authorization: string | null,
    verified: { readonly tenant: string; readonly expiresAt?: number },
  ): StreamAccess {
    const followed: Followed = {
      authorization,
      tenant: verified.tenant,
      ended: new AbortController(),
    };
    this.#open.add(followed);
    const expiry =
      verified.expiresAt === undefined
        ? undefined
        : setTimeout(
            () => followed.ended.abort(expired()),
            Math.max(0, verified.expiresAt - Date.now()),
          );
    return {
      signal: followed.ended.signal,
      release: () => {
        clearTimeout(expiry);
        this.#open.delete(followed);
      },
    };
  }

  /** Checks every open stream's credential against the current tenants (after a reload). */
  async recheck(): Promise<void> {
    const index = this.#credentials();
    // Thousands of streams often share one API key: each credential is verified once.
    const verifications = new Map<string | null, Promise<Verification | undefined>>();
    await Promise.all(
      [...this.#open].map(async (followed) => {
        let verification = verifications.get(followed.authorization);
        if (verification === undefined) {
          // A check that fails to run (not a refusal) keeps the stream: it was accepted before.
          verification = verifyCredentials(followed.authorization, index).catch(() => undefined);
          verifications.set(followed.authorization, verification);
        }
        const verified = await verification;
        if (verified === undefined) return;
        if (!verified.ok || verified.tenant !== followed.tenant) followed.ended.abort(revoked());
      }),
    );
  }
}
