import { createHash } from "node:crypto";
import * as z from "zod";
import type { ReceiptPolicy } from "../domain/receipt-privacy.js";
import type { TenantSettings } from "../domain/tenant-settings.js";
import { defaultTenantLimits, type TenantLimits } from "../limits/rate-limiter.js";
import { urlProblem } from "../webhooks/url-policy.js";
import {
  type WebhookEndpoint,
  type WebhookUrlRules,
  webhooksSchema,
} from "../webhooks/webhook-endpoint.js";

/** A key that verifies user tokens: an HS256 secret, or a public key (PEM or JWK). */
export type TokenKeyConfig =
  | { readonly alg: "HS256"; readonly kid?: string; readonly secret: string }
  | {
      readonly alg: AsymmetricAlg;
      readonly kid?: string;
      readonly publicKey?: string;
      readonly jwk?: Readonly<Record<string, unknown>>;
    };

export type AsymmetricAlg = "RS256" | "ES256" | "EdDSA";

/** One tenant as configured, validated; secrets already reduced to what verification needs. */
export interface TenantConfig {
  readonly id: string;
  /** SHA-256 (hex) of each server API key. */
  readonly apiKeySha256: readonly string[];
  readonly userTokens:
    | {
        readonly keys: readonly TokenKeyConfig[];
        readonly issuer: string | undefined;
        readonly audience: string | undefined;
        readonly maxLifetimeSeconds: number;
      }
    | undefined;
  readonly settings: TenantSettings;
  readonly limits: TenantLimits;
  readonly webhooks: readonly WebhookEndpoint[];
}

/** Tenant configuration that cannot be used; every problem is listed, never a secret. */
export class TenantConfigError extends Error {
  override readonly name = "TenantConfigError";
  constructor(readonly problems: readonly string[]) {
    super(`invalid tenant configuration:\n  ${problems.join("\n  ")}`);
  }
}

const kid = z.string().min(1).max(256).optional();
// API keys never contain a dot, so that a bearer value with two dots is always a user token.
const apiKey = z
  .string()
  .regex(/^[A-Za-z0-9_~+/=-]{32,512}$/, "must be 32 to 512 characters of [A-Za-z0-9_~+/=-]");

const tokenKey = z.discriminatedUnion("alg", [
  z.strictObject({
    alg: z.literal("HS256"),
    kid,
    secret: z.string().min(32, "must be at least 32 characters").max(4096),
  }),
  z
    .strictObject({
      alg: z.enum(["RS256", "ES256", "EdDSA"]),
      kid,
      publicKey: z.string().includes("-----BEGIN PUBLIC KEY-----").optional(),
      jwk: z.record(z.string(), z.unknown()).optional(),
    })
    .refine((key) => (key.publicKey === undefined) !== (key.jwk === undefined), {
      message: "needs exactly one of publicKey (SPKI PEM) or jwk",
    }),
]);

const perSecond = z.number().positive().max(1_000_000);
const burst = z.int().min(1).max(10_000_000);

/** On (true: the user's choice), off (false: no receipts at all), or a privacy policy. */
const receiptPolicy = z.union([z.boolean(), z.enum(["user-choice", "always", "never"])], {
  error: 'must be true, false, "user-choice", "always" or "never"',
});

const policyOf = (value: boolean | ReceiptPolicy): ReceiptPolicy =>
  typeof value === "boolean" ? "user-choice" : value;

const tenantSchema = z
  .strictObject({
    id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1 to 64 characters of [A-Za-z0-9._-]"),
    apiKeys: z.array(apiKey).max(10).default([]),
    apiKeySha256: z
      .array(z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"))
      .max(10)
      .default([]),
    userTokens: z
      .strictObject({
        keys: z.array(tokenKey).min(1).max(5),
        issuer: z.string().min(1).optional(),
        audience: z.string().min(1).optional(),
        maxLifetimeSeconds: z.int().min(60).max(86_400).default(3_600),
      })
      .optional(),
    receipts: z
      .strictObject({
        c2c: receiptPolicy.default(true),
        group: receiptPolicy.default(true),
        defaultVisibility: z
          .enum(["shared", "private"], { error: 'must be "shared" or "private"' })
          .default("shared"),
        reciprocalC2c: z.boolean().default(false),
      })
      .prefault({}),
    readMembers: z
      .strictObject({
        maxGroupSize: z.int().min(1).max(10_000_000).default(10_000),
        openToMembers: z.boolean().default(false),
      })
      .prefault({}),
    limits: z
      .strictObject({
        tenantRequestsPerSecond: perSecond.default(defaultTenantLimits.tenantRequestsPerSecond),
        tenantBurst: burst.default(defaultTenantLimits.tenantBurst),
        userRequestsPerSecond: perSecond.default(defaultTenantLimits.userRequestsPerSecond),
        userBurst: burst.default(defaultTenantLimits.userBurst),
        streamsPerUser: z.int().min(1).max(10_000).default(defaultTenantLimits.streamsPerUser),
      })
      .prefault({}),
    webhooks: webhooksSchema,
    // Messages sent longer ago are removed with their receipts (docs/operations.md, retention).
    retentionDays: z.int().min(1).max(7_300).optional(),
    // For tests only (seconds instead of days); never documented as a setting.
    retentionSeconds: z.int().min(1).max(630_720_000).optional(),
  })
  .refine((t) => t.retentionDays === undefined || t.retentionSeconds === undefined, {
    message: "set retentionDays or retentionSeconds, not both",
    path: ["retentionDays"],
  })
  .refine((t) => t.apiKeys.length + t.apiKeySha256.length > 0 || t.userTokens !== undefined, {
    message: "needs at least one credential: apiKeys, apiKeySha256 or userTokens",
  });

const fileSchema = z.strictObject({ tenants: z.array(tenantSchema).min(1) });

export const sha256Hex = (text: string): string =>
  createHash("sha256").update(text, "utf8").digest("hex");

/**
 * Parses one source of tenants (the file, or RECEIPTS_TENANTS): `{"tenants": [...]}`.
 * Problems name the source and the path, e.g. `RECEIPTS_TENANTS: tenants[0].apiKeys[1]: ...`.
 */
export function parseTenants(
  text: string,
  source: string,
  webhookUrls: WebhookUrlRules = { allowPrivate: false },
): TenantConfig[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new TenantConfigError([`${source}: not JSON (${(error as Error).message})`]);
  }
  const parsed = fileSchema.safeParse(json);
  if (!parsed.success) {
    throw new TenantConfigError(
      parsed.error.issues.map((issue) => `${source}: ${pathOf(issue.path)}: ${issue.message}`),
    );
  }
  // The URL rules depend on the deployment (RECEIPTS_WEBHOOKS_ALLOW_PRIVATE), not on the file.
  const refused = parsed.data.tenants.flatMap((t, i) =>
    t.webhooks.flatMap((endpoint, j) => {
      const problem = urlProblem(endpoint.url, webhookUrls);
      return problem === undefined
        ? []
        : [`${source}: tenants[${i}].webhooks[${j}].url (endpoint ${endpoint.id}): ${problem}`];
    }),
  );
  if (refused.length > 0) throw new TenantConfigError(refused);
  return parsed.data.tenants.map((t) => ({
    id: t.id,
    apiKeySha256: [...t.apiKeys.map(sha256Hex), ...t.apiKeySha256],
    userTokens:
      t.userTokens === undefined
        ? undefined
        : {
            keys: t.userTokens.keys,
            issuer: t.userTokens.issuer,
            audience: t.userTokens.audience,
            maxLifetimeSeconds: t.userTokens.maxLifetimeSeconds,
          },
    settings: {
      receipts: { c2c: t.receipts.c2c !== false, group: t.receipts.group !== false },
      privacy: {
        policy: { c2c: policyOf(t.receipts.c2c), group: policyOf(t.receipts.group) },
        defaultVisibility: t.receipts.defaultVisibility,
        reciprocalC2c: t.receipts.reciprocalC2c,
      },
      maxGroupSizeForMemberLists: t.readMembers.maxGroupSize,
      readMembersOpenToMembers: t.readMembers.openToMembers,
      ...retentionOf(t),
    },
    limits: t.limits,
    webhooks: t.webhooks,
  }));
}

/** Tenants of every source together: ids and API keys must be unique across all of them. */
export function mergeTenants(sources: readonly TenantConfig[][]): TenantConfig[] {
  const all = sources.flat();
  const problems: string[] = [];
  const ids = new Set<string>();
  const keyOwners = new Map<string, string>();
  for (const tenant of all) {
    if (ids.has(tenant.id)) problems.push(`tenant ${tenant.id} is configured twice`);
    ids.add(tenant.id);
    for (const hash of tenant.apiKeySha256) {
      const owner = keyOwners.get(hash);
      if (owner !== undefined && owner !== tenant.id) {
        problems.push(`tenants ${owner} and ${tenant.id} share an API key`);
      }
      keyOwners.set(hash, tenant.id);
    }
  }
  if (problems.length > 0) throw new TenantConfigError(problems);
  return all;
}

function retentionOf(t: {
  readonly retentionDays?: number | undefined;
  readonly retentionSeconds?: number | undefined;
}): { readonly retentionMs?: number } {
  if (t.retentionDays !== undefined) return { retentionMs: t.retentionDays * 86_400_000 };
  if (t.retentionSeconds !== undefined) return { retentionMs: t.retentionSeconds * 1000 };
  return {};
}

function pathOf(path: readonly PropertyKey[]): string {
  let text = "";
  for (const part of path) {
    text += typeof part === "number" ? `[${part}]` : `${text === "" ? "" : "."}${String(part)}`;
  }
  return text === "" ? "(top level)" : text;
}
