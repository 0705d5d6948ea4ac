import * as z from "zod";

/** The events an endpoint may ask for (`message.deleted`: DeleteMessages, opted into). */
export const webhookEventTypes = ["receipt.read", "conversation.read", "message.deleted"] as const;
export type WebhookEventType = (typeof webhookEventTypes)[number];

/** One tenant's webhook endpoint, validated. */
export interface WebhookEndpoint {
  /** Unique within the tenant; names the endpoint in metrics, logs and the CLI. */
  readonly id: string;
  readonly url: string;
  /** Every current signing secret (`whsec_<base64>`): a delivery is signed with each. */
  readonly secrets: readonly string[];
  readonly events: readonly WebhookEventType[];
  readonly enabled: boolean;
  /** Requests in flight to this endpoint at most. */
  readonly concurrency: number;
  readonly timeoutMs: number;
  /** Events per POST at most. */
  readonly batchSize: number;
}

export interface WebhookUrlRules {
  /** RECEIPTS_WEBHOOKS_ALLOW_PRIVATE=1: http and private, loopback, link-local addresses too. */
  readonly allowPrivate: boolean;
}

// A whsec_ secret is base64 of 24 to 64 random bytes, as the Standard Webhooks libraries make.
const secret = z.string().refine((text) => {
  if (!/^whsec_[A-Za-z0-9+/]+={0,2}$/.test(text)) return false;
  const bytes = Buffer.from(text.slice("whsec_".length), "base64").length;
  return bytes >= 24 && bytes <= 64;
}, "must be whsec_ followed by the base64 of 24 to 64 bytes");

const endpoint = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1 to 64 characters of [A-Za-z0-9._-]"),
  // Checked against the URL rules in force once parsed (see parseTenants).
  url: z.string().max(2_048),
  secrets: z.array(secret).min(1).max(5),
  events: z.array(z.enum(webhookEventTypes)).min(1).default(["receipt.read", "conversation.read"]),
  enabled: z.boolean().default(true),
  concurrency: z.int().min(1).max(64).default(4),
  timeoutSeconds: z.number().min(0.1).max(60).default(10),
  batchSize: z.int().min(1).max(1_000).default(100),
});
/** A tenant's `webhooks` list in the tenants file. */
export const webhooksSchema = z
  .array(endpoint)
  .max(10)
  .default([])
  .superRefine((endpoints, context) => {
    const seen = new Set<string>();
    endpoints.forEach((e, i) => {
      if (seen.has(e.id)) {
        context.addIssue({ code: "custom", path: [i, "id"], message: `${e.id} is used twice` });
      }
      seen.add(e.id);
    });
  })
  .transform((endpoints): WebhookEndpoint[] =>
    endpoints.map(({ timeoutSeconds, events, ...e }) => ({
      ...e,
      events: [...new Set(events)],
      timeoutMs: Math.round(timeoutSeconds * 1000),
    })),
  );
