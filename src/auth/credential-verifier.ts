import { createHash, timingSafeEqual } from "node:crypto";
import {
  type CryptoKey,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  importJWK,
  importSPKI,
  type JWK,
  jwtVerify,
} from "jose";
import type { Caller } from "../domain/caller.js";
import { requireId } from "../domain/validate.js";
import type { AsymmetricAlg, TenantConfig } from "./tenant-config.js";

/** A user-token key ready to verify with. */
export interface TokenKey {
  readonly alg: "HS256" | AsymmetricAlg;
  readonly kid: string | undefined;
  readonly key: CryptoKey | Uint8Array;
}

/** What verification needs of one tenant. */
export interface TenantCredentials {
  readonly id: string;
  readonly apiKeyHashes: readonly Buffer[];
  readonly userTokens:
    | {
        readonly keys: readonly TokenKey[];
        readonly issuer: string | undefined;
        readonly audience: string | undefined;
        readonly maxLifetimeSeconds: number;
      }
    | undefined;
}

/** Every tenant's credentials, with API keys indexed by their SHA-256. */
export interface CredentialIndex {
  readonly tenants: ReadonlyMap<string, TenantCredentials>;
  readonly apiKeys: ReadonlyMap<string, { readonly tenant: string; readonly hash: Buffer }>;
}

export function indexCredentials(tenants: readonly TenantCredentials[]): CredentialIndex {
  const apiKeys = new Map<string, { tenant: string; hash: Buffer }>();
  for (const tenant of tenants) {
    for (const hash of tenant.apiKeyHashes) {
      apiKeys.set(hash.toString("hex"), { tenant: tenant.id, hash });
    }
  }
  return { tenants: new Map(tenants.map((t) => [t.id, t])), apiKeys };
}

export type Verification =
  | {
      readonly ok: true;
      readonly tenant: string;
      readonly caller: Caller;
      /** User tokens: when (epoch ms) the token stops verifying, its `exp` plus the tolerance. */
      readonly expiresAt?: number;
    }
  | {
      readonly ok: false;
      /** For the caller: never says whether a tenant or user exists. */
      readonly message: string;
      /** For the log only. */
      readonly reason: string;
    };

/** Claim naming the tenant in a user token; trusted only once that tenant's key verified it. */
export const tenantClaim = "tenant";

/** Tolerated clock difference between the tenant's token minting and this service. */
const clockToleranceSeconds = 30;

const refused = (reason: string, message = "missing or invalid credentials"): Verification => ({
  ok: false,
  message,
  reason,
});

/** Imports a tenant's token keys once, when the configuration is (re)loaded. */
export async function importTenantCredentials(config: TenantConfig): Promise<TenantCredentials> {
  const tokens = config.userTokens;
  return {
    id: config.id,
    apiKeyHashes: config.apiKeySha256.map((hex) => Buffer.from(hex, "hex")),
    userTokens:
      tokens === undefined
        ? undefined
        : {
            keys: await Promise.all(
              tokens.keys.map(async (key, i): Promise<TokenKey> => {
                try {
                  if (key.alg === "HS256") {
                    return {
                      alg: key.alg,
                      kid: key.kid,
                      key: new TextEncoder().encode(key.secret),
                    };
                  }
                  const imported =
                    key.publicKey !== undefined
                      ? await importSPKI(key.publicKey, key.alg)
                      : await importJWK(key.jwk as JWK, key.alg);
                  return { alg: key.alg, kid: key.kid, key: imported };
                } catch (error) {
                  throw new Error(
                    `tenant ${config.id}: userTokens.keys[${i}]: not a usable ${key.alg} public key (${(error as Error).message})`,
                  );
                }
              }),
            ),
            issuer: tokens.issuer,
            audience: tokens.audience,
            maxLifetimeSeconds: tokens.maxLifetimeSeconds,
          },
  };
}

/**
 * Checks `Authorization: Bearer <credential>`. A credential with two dots is a user token
 * (a compact JWS); anything else is a server API key.
 */
export async function verifyCredentials(
  authorization: string | null,
  index: CredentialIndex,
  now: Date = new Date(),
): Promise<Verification> {
  if (authorization === null || authorization === "") {
    return refused(
      "no authorization header",
      "missing credentials: send Authorization: Bearer <API key or user token>",
    );
  }
  const match = /^Bearer +(\S+) *$/i.exec(authorization);
  const credential = match?.[1];
  if (credential === undefined) return refused("not a bearer credential");
  if (credential.split(".").length === 3) return verifyUserToken(credential, index.tenants, now);
  return verifyApiKey(credential, index);
}

/**
 * Keys are looked up by their SHA-256, never compared as text: timing can at most tell how
 * much of a digest matched, which says nothing about a key. The match is confirmed in
 * constant time.
 */
function verifyApiKey(apiKey: string, index: CredentialIndex): Verification {
  const presented = createHash("sha256").update(apiKey, "utf8").digest();
  const known = index.apiKeys.get(presented.toString("hex"));
  if (known === undefined || !timingSafeEqual(known.hash, presented)) {
    return refused("unknown API key");
  }
  return { ok: true, tenant: known.tenant, caller: { kind: "service" } };
}

async function verifyUserToken(
  token: string,
  tenants: ReadonlyMap<string, TenantCredentials>,
  now: Date,
): Promise<Verification> {
  let claimedTenant: unknown;
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    claimedTenant = decodeJwt(token)[tenantClaim];
    header = decodeProtectedHeader(token);
  } catch {
    return refused("user token does not decode");
  }
  const tenant = typeof claimedTenant === "string" ? tenants.get(claimedTenant) : undefined;
  const config = tenant?.userTokens;
  if (tenant === undefined || config === undefined) {
    return refused("user token names no tenant that accepts user tokens");
  }
  const candidates = config.keys.filter(
    (key) =>
      key.alg === header.alg &&
      (header.kid === undefined || key.kid === undefined || key.kid === header.kid),
  );
  for (const candidate of candidates) {
    try {
      const { payload } = await jwtVerify(token, candidate.key, {
        algorithms: [candidate.alg],
        issuer: config.issuer,
        audience: config.audience,
        requiredClaims: ["exp", "iat", "sub", tenantClaim],
        maxTokenAge: config.maxLifetimeSeconds,
        clockTolerance: clockToleranceSeconds,
        currentDate: now,
      });
      const lifetime = (payload.exp ?? 0) - (payload.iat ?? 0);
      if (lifetime > config.maxLifetimeSeconds) {
        return refused(
          `user token lives ${lifetime} s, more than ${config.maxLifetimeSeconds} s`,
          `user token lifetime (exp - iat) must be at most ${config.maxLifetimeSeconds} seconds`,
        );
      }
      let userId: string;
      try {
        userId = requireId("sub", payload.sub ?? "");
      } catch {
        return refused("user token sub is not a valid user id");
      }
      return {
        ok: true,
        tenant: tenant.id,
        caller: { kind: "user", userId },
        // exp is required above.
        expiresAt: ((payload.exp ?? 0) + clockToleranceSeconds) * 1000,
      };
    } catch (error) {
      // Another key of the tenant may have signed it (rotation); any other failure is final.
      if (error instanceof errors.JWSSignatureVerificationFailed) continue;
      if (error instanceof errors.JWTExpired) {
        return refused("user token expired", "user token expired: mint a new one");
      }
      // Claims are checked after the signature: the token is genuine, so the caller may know why.
      if (error instanceof errors.JWTClaimValidationFailed) {
        return refused(`user token claim: ${error.message}`, `user token ${error.message}`);
      }
      return refused(`user token rejected: ${(error as Error).message}`);
    }
  }
  return refused("user token signature does not verify with the tenant's keys");
}
