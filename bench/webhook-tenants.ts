import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type BenchContext, connectClients, seedWorkload } from "./bench-context.js";
import { receiptKey } from "./paced-send.js";
import type { ServiceProcess } from "./processes.js";
import type { BenchWebhookReceiver } from "./webhook-receiver.js";
import { messageId, receiptCall, userId, type Workload } from "./workload.js";

/** The webhooks scenario's tenants, their services and their warm-up (scenarios/webhooks.ts). */
export interface BenchTenant {
  readonly id: string;
  readonly apiKey: string;
  readonly secret: string;
}

export const tenantCount = 4;
/** How long delivery may stay without a new POST before what has not arrived counts as lost. */
export const quietMs = 15_000;

/** Receipts of the workload that arrived, and arrivals beyond each one's first. */
export function tally(receiver: BenchWebhookReceiver, prefix: string) {
  let delivered = 0;
  let duplicates = 0;
  for (const [key, times] of receiver.arrivals) {
    if (!key.startsWith(prefix)) continue;
    delivered += 1;
    duplicates += times.length - 1;
  }
  return { delivered, duplicates };
}

export function newTenants(prefix: string): BenchTenant[] {
  return Array.from({ length: tenantCount }, (_, i) => ({
    id: `${prefix}t${i}`,
    apiKey: randomBytes(30).toString("base64url"),
    secret: `whsec_${randomBytes(32).toString("base64")}`,
  }));
}

/** A service whose tenants file holds `tenants`, each with one endpoint at the receiver or none. */
export function startWithTenants(
  context: BenchContext,
  tenants: readonly BenchTenant[],
  receiver: BenchWebhookReceiver,
  webhooks: boolean,
  name: string,
): Promise<ServiceProcess> {
  const file = join(context.scratchDir, `tenants-${name}.json`);
  const config = {
    tenants: tenants.map((t) => ({
      id: t.id,
      apiKeys: [t.apiKey],
      // The benchmark measures the service, not the default per-tenant rate limits.
      limits: { tenantRequestsPerSecond: 1_000_000, tenantBurst: 10_000_000 },
      webhooks: webhooks
        ? [{ id: "bench", url: receiver.endpointFor(t.id, t.secret), secrets: [t.secret] }]
        : [],
    })),
  };
  writeFileSync(file, JSON.stringify(config));
  return context.startService({
    RECEIPTS_TENANTS_FILE: file,
    // The receiver listens on http://127.0.0.1.
    RECEIPTS_WEBHOOKS_ALLOW_PRIVATE: "1",
  });
}

/**
 * Seeds the workload (group g in tenant g % tenants), then one receipt per tenant of a group
 * of its own: with webhooks, waits until each tenant's has arrived, so that every endpoint's
 * delivery runs before the measured load starts.
 */
export async function seedAndWarm(
  context: BenchContext,
  service: ServiceProcess,
  tenants: readonly BenchTenant[],
  workload: Workload,
  receiver: BenchWebhookReceiver,
  webhooks: boolean,
): Promise<void> {
  const clients = tenants.map((t) => ({
    ...context,
    ...connectClients(service.address, t.apiKey),
  }));
  const clientsOf = (g: number) => clients[g % clients.length] as BenchContext;
  context.log(`webhooks: seeding ${workload.groups} groups over ${tenants.length} tenants`);
  await seedWorkload(context, workload, clientsOf);
  const warm: Workload = {
    ...workload,
    // Not under the workload's prefix: the warm-up is no part of what is counted.
    prefix: `${workload.prefix.replace(/-$/, "")}warm-`,
    groups: tenants.length,
    members: 2,
    messagesPerGroup: 1,
    idsPerCall: 1,
  };
  await seedWorkload(context, warm, clientsOf);
  for (let g = 0; g < tenants.length; g++) {
    const call = receiptCall(warm, g);
    await clientsOf(g).receipts.sendReceipts({
      conversationId: call.conversationId,
      readerId: call.readerId,
      messageIds: call.messageIds,
    });
  }
  if (!webhooks) return;
  const keys = tenants.map((_, g) => receiptKey(messageId(warm, g, 0), userId(warm, g, 1)));
  const arrived = await receiver.until(
    () => keys.every((key) => receiver.arrivals.has(key)),
    quietMs,
  );
  if (!arrived)
    throw new Error(
      `webhooks: the warm-up receipts of ${keys.filter((k) => !receiver.arrivals.has(k)).length} tenants never arrived (${receiver.refused} POSTs refused: ${receiver.firstProblem ?? "none"})`,
    );
}
