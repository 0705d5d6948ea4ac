import { createHmac } from "node:crypto";

/**
 * The Standard Webhooks headers of one delivery attempt: the HMAC-SHA256 of
 * `id.timestamp.body` under each secret (`whsec_<base64>`), space-separated,
 * so that a receiver holding any current secret verifies while secrets rotate.
 */
export function signatureHeaders(
  id: string,
  timestampSeconds: number,
  body: string,
  secrets: readonly string[],
): Record<"webhook-id" | "webhook-timestamp" | "webhook-signature", string> {
  const signed = `${id}.${timestampSeconds}.${body}`;
  const signatures = secrets.map((secret) => {
    const key = Buffer.from(secret.slice("whsec_".length), "base64");
    return `v1,${createHmac("sha256", key).update(signed, "utf8").digest("base64")}`;
  });
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestampSeconds),
    "webhook-signature": signatures.join(" "),
  };
}
