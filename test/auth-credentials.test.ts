import { decodeJwt, exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import {
  type CredentialIndex,
  importTenantCredentials,
  indexCredentials,
  type Verification,
  verifyCredentials,
} from "../src/auth/credential-verifier.js";
import { mergeTenants, parseTenants, sha256Hex } from "../src/auth/tenant-config.js";
import { mintToken, newApiKey, secretBytes } from "./support/auth-fixtures.js";

/** Credential verification without a server: API keys and user tokens, every rule of them. */
const hsSecret = newApiKey();
const oldSecret = newApiKey();
const apiKey = newApiKey();
const hashedKey = newApiKey();
let rs: Awaited<ReturnType<typeof generateKeyPair>>;
let es: Awaited<ReturnType<typeof generateKeyPair>>;
let tenants: CredentialIndex;

beforeAll(async () => {
  rs = await generateKeyPair("RS256", { extractable: true });
  es = await generateKeyPair("ES256", { extractable: true });
  const configs = parseTenants(
    JSON.stringify({
      tenants: [
        {
          id: "hs",
          apiKeys: [apiKey],
          apiKeySha256: [sha256Hex(hashedKey)],
          userTokens: {
            keys: [
              { alg: "HS256", kid: "new", secret: hsSecret },
              { alg: "HS256", kid: "old", secret: oldSecret },
            ],
            maxLifetimeSeconds: 600,
          },
        },
        {
          id: "rs",
          userTokens: {
            keys: [{ alg: "RS256", jwk: await exportJWK(rs.publicKey) }],
            issuer: "https://rs.example",
            audience: "read-receipts",
          },
        },
        {
          id: "es",
          userTokens: { keys: [{ alg: "ES256", publicKey: await exportSPKI(es.publicKey) }] },
        },
      ],
    }),
    "test",
  );
  tenants = indexCredentials(await Promise.all(configs.map(importTenantCredentials)));
});

const verify = (credential: string | null): Promise<Verification> =>
  verifyCredentials(credential === null ? null : `Bearer ${credential}`, tenants);

const hsToken = (overrides: Partial<Parameters<typeof mintToken>[0]> = {}) =>
  mintToken({ tenant: "hs", sub: "alice", key: secretBytes(hsSecret), kid: "new", ...overrides });

describe("server API keys", () => {
  it("make the tenant's service caller, whether configured in clear or as SHA-256", async () => {
    expect(await verify(apiKey)).toEqual({ ok: true, tenant: "hs", caller: { kind: "service" } });
    expect(await verify(hashedKey)).toMatchObject({ ok: true, tenant: "hs" });
  });

  it("refuse unknown keys, other schemes and missing headers", async () => {
    expect(await verify(newApiKey())).toMatchObject({ ok: false });
    expect(await verify(`${apiKey}x`)).toMatchObject({ ok: false });
    expect(await verifyCredentials(`Basic ${apiKey}`, tenants)).toMatchObject({ ok: false });
    expect(await verifyCredentials(`bearer ${apiKey}`, tenants)).toMatchObject({ ok: true });
    expect(await verify(null)).toMatchObject({
      ok: false,
      message: expect.stringContaining("missing"),
    });
    expect(await verifyCredentials("", tenants)).toMatchObject({ ok: false });
  });
});

describe("user tokens", () => {
  it("make a user caller of the tenant that signed them, with HS256, RS256 (JWK) and ES256 (PEM)", async () => {
    const token = await hsToken();
    expect(await verify(token)).toEqual({
      ok: true,
      tenant: "hs",
      caller: { kind: "user", userId: "alice" },
      // When an open stream of this token ends: exp plus the 30-s clock tolerance.
      expiresAt: ((decodeJwt(token).exp ?? 0) + 30) * 1000,
    });
    const rsToken = await mintToken({
      tenant: "rs",
      sub: "bob",
      key: rs.privateKey,
      alg: "RS256",
      issuer: "https://rs.example",
      audience: "read-receipts",
    });
    expect(await verify(rsToken)).toMatchObject({
      ok: true,
      tenant: "rs",
      caller: { userId: "bob" },
    });
    const esToken = await mintToken({
      tenant: "es",
      sub: "carol",
      key: es.privateKey,
      alg: "ES256",
    });
    expect(await verify(esToken)).toMatchObject({ ok: true, tenant: "es" });
  });

  it("accept any configured key of the tenant (rotation), with or without kid", async () => {
    expect(await verify(await hsToken({ key: secretBytes(oldSecret), kid: "old" }))).toMatchObject({
      ok: true,
    });
    const noKid = await new SignJWT({ tenant: "hs" })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("alice")
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(secretBytes(oldSecret));
    expect(await verify(noKid)).toMatchObject({ ok: true });
  });

  it("refuse an expired token, saying so only once the signature verified", async () => {
    const expired = await verify(await hsToken({ expiresIn: -60, issuedAt: -120 }));
    expect(expired).toMatchObject({ ok: false, message: expect.stringContaining("expired") });
    const forgedExpired = await verify(
      await hsToken({ expiresIn: -60, issuedAt: -120, key: secretBytes(newApiKey()) }),
    );
    expect(forgedExpired).toMatchObject({ ok: false, message: "missing or invalid credentials" });
  });

  it("require exp, iat, sub and the tenant claim", async () => {
    for (const claim of ["exp", "iat", "sub", "tenant"] as const) {
      expect(await verify(await hsToken({ omit: [claim] })), claim).toMatchObject({ ok: false });
    }
  });

  it("bound the lifetime: exp - iat and the token's age", async () => {
    expect(await verify(await hsToken({ expiresIn: 3_600 }))).toMatchObject({
      ok: false,
      message: expect.stringContaining("600"),
    });
    expect(await verify(await hsToken({ issuedAt: -700, expiresIn: 60 }))).toMatchObject({
      ok: false,
    });
    expect(await verify(await hsToken({ expiresIn: 590 }))).toMatchObject({ ok: true });
  });

  it("check iss and aud when the tenant configures them", async () => {
    const mint = (issuer: string | undefined, audience: string | undefined) =>
      mintToken({ tenant: "rs", sub: "bob", key: rs.privateKey, alg: "RS256", issuer, audience });
    expect(await verify(await mint("https://rs.example", "read-receipts"))).toMatchObject({
      ok: true,
    });
    expect(await verify(await mint("https://evil.example", "read-receipts"))).toMatchObject({
      ok: false,
    });
    expect(await verify(await mint("https://rs.example", "other"))).toMatchObject({ ok: false });
    expect(await verify(await mint(undefined, undefined))).toMatchObject({ ok: false });
  });

  it("refuse a token signed with another tenant's key, or naming an unknown tenant, alike", async () => {
    const otherKey = await verify(
      await mintToken({ tenant: "hs", sub: "alice", key: es.privateKey, alg: "ES256" }),
    );
    const unknown = await verify(
      await mintToken({ tenant: "nope", sub: "alice", key: secretBytes(hsSecret) }),
    );
    const rsAsHs = await verify(
      await mintToken({ tenant: "rs", sub: "alice", key: secretBytes(hsSecret) }),
    );
    for (const refused of [otherKey, unknown, rsAsHs]) {
      expect(refused).toMatchObject({ ok: false, message: "missing or invalid credentials" });
    }
  });

  it("refuse alg none, malformed tokens and user ids that are not valid ids", async () => {
    const header = Buffer.from(JSON.stringify({ alg: "none" })).toString("base64url");
    const now = Math.floor(Date.now() / 1000);
    const body = Buffer.from(
      JSON.stringify({ tenant: "hs", sub: "alice", iat: now, exp: now + 60 }),
    ).toString("base64url");
    expect(await verify(`${header}.${body}.`)).toMatchObject({ ok: false });
    expect(await verify("a.b.c")).toMatchObject({ ok: false });
    expect(await verify(await hsToken({ sub: "x".repeat(129) }))).toMatchObject({ ok: false });
    expect(await verify(await hsToken({ sub: "bad\u0000id" }))).toMatchObject({ ok: false });
  });
});

describe("tenant configuration", () => {
  it("lists every problem with its path and never echoes a secret", () => {
    const secret = "s3cr3t-but-too-short";
    let problems: readonly string[] = [];
    try {
      parseTenants(
        JSON.stringify({
          tenants: [
            {
              id: "bad id",
              apiKeys: [secret],
              userTokens: { keys: [{ alg: "HS256", secret }, { alg: "ES256" }] },
              limits: { userBurst: 0 },
              surprise: true,
            },
          ],
        }),
        "RECEIPTS_TENANTS",
      );
    } catch (error) {
      problems = (error as { problems: readonly string[] }).problems;
    }
    const text = problems.join("\n");
    for (const path of [
      "tenants[0].id",
      "tenants[0].apiKeys[0]",
      "tenants[0].userTokens.keys[0].secret",
      "tenants[0].userTokens.keys[1]",
      "tenants[0].limits.userBurst",
      "surprise",
    ]) {
      expect(text).toContain(path);
    }
    expect(text).toMatch(/^RECEIPTS_TENANTS: /);
    expect(text).not.toContain(secret);
  });

  it("reads retentionDays as the tenant's retention, and names a bad one", () => {
    const tenantWith = (extra: Record<string, unknown>) =>
      JSON.stringify({ tenants: [{ id: "a", apiKeys: [apiKey], ...extra }] });
    expect(parseTenants(tenantWith({ retentionDays: 30 }), "f")[0]?.settings.retentionMs).toBe(
      30 * 86_400_000,
    );
    expect(parseTenants(tenantWith({}), "f")[0]?.settings.retentionMs).toBeUndefined();
    for (const bad of [0, 1.5, "30", 7_301]) {
      expect(() => parseTenants(tenantWith({ retentionDays: bad }), "f")).toThrow(
        /f: tenants\[0\]\.retentionDays: /,
      );
    }
    expect(() => parseTenants(tenantWith({ retentionDays: 1, retentionSeconds: 5 }), "f")).toThrow(
      /tenants\[0\]\.retentionDays: set retentionDays or retentionSeconds, not both/,
    );
  });

  it("refuses no tenant, no credential, JSON that does not parse, duplicate ids and shared keys", () => {
    expect(() => parseTenants('{"tenants":[]}', "f")).toThrow(/tenants/);
    expect(() => parseTenants('{"tenants":[{"id":"a"}]}', "f")).toThrow(/credential/);
    expect(() => parseTenants("{", "f")).toThrow(/not JSON/);
    const one = parseTenants(JSON.stringify({ tenants: [{ id: "a", apiKeys: [apiKey] }] }), "f");
    const again = parseTenants(
      JSON.stringify({ tenants: [{ id: "a", apiKeys: [newApiKey()] }] }),
      "e",
    );
    const sharing = parseTenants(
      JSON.stringify({ tenants: [{ id: "b", apiKeys: [apiKey] }] }),
      "e",
    );
    expect(() => mergeTenants([one, again])).toThrow(/configured twice/);
    expect(() => mergeTenants([one, sharing])).toThrow(/share an API key/);
  });

  it("fills in the documented defaults", () => {
    const [tenant] = parseTenants(
      JSON.stringify({ tenants: [{ id: "a", apiKeys: [apiKey] }] }),
      "f",
    );
    expect(tenant?.settings).toEqual({
      receipts: { c2c: true, group: true },
      maxGroupSizeForMemberLists: 10_000,
      readMembersOpenToMembers: false,
      privacy: {
        policy: { c2c: "user-choice", group: "user-choice" },
        defaultVisibility: "shared",
        reciprocalC2c: false,
      },
    });
    expect(tenant?.limits).toEqual({
      tenantRequestsPerSecond: 1_000,
      tenantBurst: 2_000,
      userRequestsPerSecond: 20,
      userBurst: 40,
      streamsPerUser: 10,
    });
    expect(tenant?.apiKeySha256).toEqual([sha256Hex(apiKey)]);
  });
});
