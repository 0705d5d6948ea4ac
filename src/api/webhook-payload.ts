import { createHash, randomUUID } from "node:crypto";
import { type JsonObject, toJson } from "@bufbuild/protobuf";
import {
  MessageDeletedUpdateSchema,
  ReadHorizonUpdateSchema,
  ReceiptUpdateSchema,
} from "../../gen/receipts/v1/receipts_pb.js";
import type { PositionedChange } from "../domain/model.js";
import type { WebhookEventType } from "../webhooks/webhook-endpoint.js";
import { changeToProto } from "./receipt-routes.js";

/** One event as a webhook carries it; `data` is the Connect JSON of the API's update message. */
export interface WebhookEvent {
  /** Stable for a change of the tenant's log: receivers drop events they have seen. */
  readonly id: string;
  readonly type: WebhookEventType | "webhook.test";
  /** When it happened (the receipt's read_at, the horizon's read_up_to), RFC 3339. */
  readonly timestamp: string;
  readonly tenant: string;
  readonly conversationId: string;
  readonly data: JsonObject;
}

// Zero counts and empty ids are written out: a receiver reads `unreadCount: 0`, not a missing field.
const allFields = { alwaysEmitImplicit: true } as const;

/** The event of a change of the tenant's log: `receipt.read`, `conversation.read` or `message.deleted`. */
export function webhookEventOf(tenant: string, positioned: PositionedChange): WebhookEvent {
  const { change } = positioned;
  const update = changeToProto(change);
  const base = { id: eventId(tenant, positioned.position), tenant };
  if (update.case === "receipt" && change.kind === "receipt") {
    return {
      ...base,
      type: "receipt.read",
      timestamp: new Date(change.readAt).toISOString(),
      conversationId: change.receipt.message.conversationId,
      data: toJson(ReceiptUpdateSchema, update.value, allFields) as JsonObject,
    };
  }
  if (update.case === "readHorizon" && change.kind === "horizon") {
    return {
      ...base,
      type: "conversation.read",
      timestamp: new Date(change.readUpTo).toISOString(),
      conversationId: change.conversationId,
      data: toJson(ReadHorizonUpdateSchema, update.value, allFields) as JsonObject,
    };
  }
  if (update.case === "messageDeleted" && change.kind === "deletion") {
    return {
      ...base,
      type: "message.deleted",
      timestamp: new Date(change.deletedAt).toISOString(),
      conversationId: change.conversationId,
      data: toJson(MessageDeletedUpdateSchema, update.value, allFields) as JsonObject,
    };
  }
  throw new Error(`no webhook event for a ${change.kind} change`);
}

/** Events are batched: the body always says how many it holds and lists them in order. */
export function webhookBody(tenant: string, events: readonly WebhookEvent[]): string {
  return JSON.stringify({
    tenant,
    eventCount: events.length,
    events: events.map(({ id, type, timestamp, data }) => ({ id, type, timestamp, data })),
  });
}

/** A `webhook.test` event (the CLI's `webhooks test`): it carries nothing but its tenant. */
export function testWebhookEvent(tenant: string, now: number): WebhookEvent {
  return {
    id: `evt_test_${randomUUID()}`,
    type: "webhook.test",
    timestamp: new Date(now).toISOString(),
    tenant,
    conversationId: "",
    data: {},
  };
}

/** The webhook-id of a batch: the same events give the same id, on every attempt and instance. */
export function webhookId(endpointId: string, events: readonly WebhookEvent[]): string {
  const hash = createHash("sha256").update(endpointId);
  for (const event of events) hash.update(`\u0000${event.id}`);
  return `msg_${hash.digest("base64url").slice(0, 27)}`;
}

function eventId(tenant: string, position: string): string {
  const hash = createHash("sha256").update(`${tenant}\u0000${position}`);
  return `evt_${hash.digest("base64url").slice(0, 27)}`;
}
