import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { MembershipService } from "../../gen/receipts/v1/membership_pb.js";
import { ConversationType, ReadReceiptService } from "../../gen/receipts/v1/receipts_pb.js";
import { minutes } from "./fixtures.js";

/** One tenant of a test's tenants file, with its API key and webhook endpoints. */
export interface WebhookTenant {
  readonly id: string;
  readonly apiKey: string;
  readonly webhooks: readonly Record<string, unknown>[];
}

export const tenantsJson = (tenants: readonly WebhookTenant[]): string =>
  JSON.stringify({
    tenants: tenants.map((t) => ({ id: t.id, apiKeys: [t.apiKey], webhooks: t.webhooks })),
  });

/** Settings that make retries quick enough for tests, and allow the receiver on 127.0.0.1. */
export const quickWebhooks: Record<string, string> = {
  RECEIPTS_WEBHOOKS_ALLOW_PRIVATE: "1",
  RECEIPTS_WEBHOOKS_BACKOFF_BASE_MS: "50",
  RECEIPTS_WEBHOOKS_BACKOFF_MAX_SECONDS: "1",
};

export interface TenantClients {
  readonly receipts: Client<typeof ReadReceiptService>;
  readonly members: Client<typeof MembershipService>;
}

export function tenantClients(baseUrl: string, apiKey: string): TenantClients {
  const auth: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${apiKey}`);
    return next(request);
  };
  const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [auth] });
  return {
    receipts: createClient(ReadReceiptService, transport),
    members: createClient(MembershipService, transport),
  };
}

/** Message ids are the tenant's: each group's messages are `<group>m0`, `<group>m1`, ... */
export const messageOf = (groupId: string, index: number): string => `${groupId}m${index}`;

/** Groups with a sender `s` and the readers, each with `messages` messages (see messageOf). */
export async function seedGroups(
  clients: TenantClients,
  groups: readonly string[],
  readers: readonly string[],
  messages: number,
): Promise<void> {
  for (const groupId of groups) {
    await clients.members.addMembers({
      groupId,
      userIds: ["s", ...readers],
      joinedAt: timestampFromMs(minutes(0)),
    });
    for (let i = 0; i < messages; i += 100) {
      await clients.receipts.trackMessages({
        messages: Array.from({ length: Math.min(100, messages - i) }, (_, k) => ({
          conversationId: groupId,
          conversationType: ConversationType.GROUP,
          messageId: messageOf(groupId, i + k),
          senderId: "s",
          sentAt: timestampFromMs(minutes(1) + i + k),
        })),
      });
    }
  }
}

/** "conversation/message/reader" of each receipt.read event, in the order given. */
export const receiptKeys = (
  events: readonly {
    type: string;
    data: { receipt?: Record<string, unknown>; readerId?: string };
  }[],
): string[] =>
  events
    .filter((e) => e.type === "receipt.read")
    .map(
      (e) => `${e.data.receipt?.conversationId}/${e.data.receipt?.messageId}/${e.data.readerId}`,
    );
