import { hash, randomUUID } from "node:crypto";
import { enumToJson, type JsonObject, toJson } from "@bufbuild/protobuf";
import { TimestampSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ConversationTypeSchema } from "../../gen/receipts/v1/receipts_pb.js";
import type { MessageReceipt, PositionedChange } from "../domain/model.js";
import type { WebhookEventType } from "../webhooks/webhook-endpoint.js";
import { conversationTypeToProto } from "./convert.js";

/** One event as a webhook carries it; `data` is the Connect JSON of the API's update message. */
export interface WebhookEvent {
  /** Stable for a change of the tenant's log: receivers drop events they have seen. */
  readonly id: string;
  readonly type: WebhookEventType | "webhook.test";
  /** When it happened (the receipt's read_at, the horizon's read_up_to), RFC 3339. */
  readonly timestamp: string;
  /** The same instant in ms: for the delivery's metrics, never sent. */
  readonly occurredAt: number;
  readonly tenant: string;
  readonly conversationId: string;
  readonly data: JsonObject;
}

/**
 * The event of a change of the tenant's log: `receipt.read`, `conversation.read` or
 * `message.deleted`. `data` is written directly rather than through protobuf's toJson (8–19 µs
 * an event); test/webhook-payload.property.test.ts holds it to toJson's output byte for byte.
 */
export function webhookEventOf(tenant: string, positioned: PositionedChange): WebhookEvent {
  const { change } = positioned;
  const event = (
    type: WebhookEventType,
    at: number,
    conversationId: string,
    data: (atJson: string) => JsonObject,
  ): WebhookEvent => {
    // One rendering of the instant for both places it appears (it costs µs an event); first
    // the Timestamp's, which refuses what is out of its range as it always did.
    const atJson = timestampJson(at);
    return {
      id: eventId(tenant, positioned.position),
      tenant,
      type,
      timestamp: isoOf(at, atJson),
      occurredAt: at,
      conversationId,
      data: data(atJson),
    };
  };
  switch (change.kind) {
    case "receipt":
      return event("receipt.read", change.readAt, change.receipt.message.conversationId, (at) => ({
        receipt: receiptJson(change.receipt),
        readerId: change.readerId,
        readAt: at,
      }));
    case "horizon":
      return event("conversation.read", change.readUpTo, change.conversationId, (at) => ({
        conversationId: change.conversationId,
        readerId: change.readerId,
        readUpTo: at,
      }));
    case "deletion":
      return event("message.deleted", change.deletedAt, change.conversationId, (at) => ({
        conversationId: change.conversationId,
        messageIds: change.messages.map((m) => m.messageId),
        deletedAt: at,
      }));
  }
}

/** A MessageReceipt in Connect JSON, fields in the proto's order, zeros and "" written out. */
function receiptJson(receipt: MessageReceipt): JsonObject {
  const { message } = receipt;
  return {
    conversationId: message.conversationId,
    conversationType: conversationTypeJson[message.conversationType],
    messageId: message.messageId,
    senderId: message.senderId,
    readCount: receipt.readCount,
    unreadCount: receipt.unreadCount,
    receiverId: message.receiverId,
    receiverRead: receipt.receiverRead,
    sentAt: timestampJson(message.sentAt),
    ...(receipt.receiverReadAt === undefined
      ? {}
      : { receiverReadAt: timestampJson(receipt.receiverReadAt) }),
  };
}

const conversationTypeJson = {
  group: enumToJson(ConversationTypeSchema, conversationTypeToProto("group")) as string,
  c2c: enumToJson(ConversationTypeSchema, conversationTypeToProto("c2c")) as string,
};

/** Years 0001 to 9999, the range of a Timestamp's JSON. */
const firstMs = -62_135_596_800_000;
const lastMs = 253_402_300_799_999;

/** A Timestamp of whole milliseconds in Connect JSON: RFC 3339, the fraction only when not 0. */
function timestampJson(ms: number): string {
  // Outside its range protobuf refuses it: the same error as before, from the same place.
  if (!Number.isInteger(ms) || ms < firstMs || ms > lastMs) {
    return toJson(TimestampSchema, timestampFromMs(ms)) as string;
  }
  const iso = new Date(ms).toISOString();
  return iso.endsWith(".000Z") ? `${iso.slice(0, -5)}Z` : iso;
}

/**
 * `Date.toISOString` of an instant whose Timestamp JSON is `json`, without rendering it again
 * when that JSON is its fast path's (whole ms, the fraction dropped when 0).
 */
function isoOf(ms: number, json: string): string {
  if (json.length === 24) return json;
  if (json.length === 20) return `${json.slice(0, -1)}.000Z`;
  return new Date(ms).toISOString();
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
    occurredAt: now,
    tenant,
    conversationId: "",
    data: {},
  };
}

/** The webhook-id of a batch: the same events give the same id, on every attempt and instance. */
export function webhookId(endpointId: string, events: readonly WebhookEvent[]): string {
  let hashed = endpointId;
  for (const event of events) hashed += `\u0000${event.id}`;
  return `msg_${hash("sha256", hashed, "base64url").slice(0, 27)}`;
}

// One-shot hashing: no Hash object per event.
function eventId(tenant: string, position: string): string {
  return `evt_${hash("sha256", `${tenant}\u0000${position}`, "base64url").slice(0, 27)}`;
}
