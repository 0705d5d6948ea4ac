import { toJson } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  MessageDeletedUpdateSchema,
  ReadHorizonUpdateSchema,
  ReceiptUpdateSchema,
} from "../gen/receipts/v1/receipts_pb.js";
import { changeToProto } from "../src/api/receipt-routes.js";
import { webhookEventOf } from "../src/api/webhook-payload.js";
import type { ReceiptChange } from "../src/domain/model.js";

/**
 * A webhook event's `data` is the Connect JSON of the API's update message. It is written
 * directly, not through protobuf's toJson: for any change it must be the same JSON text that
 * toJson gives (with implicit fields written out), field order included.
 */

// Whole milliseconds over the whole range of a Timestamp's JSON (years 0001 to 9999).
const ms = fc.oneof(
  fc.integer({ min: -62_135_596_800_000, max: 253_402_300_799_999 }),
  fc.integer({ min: 0, max: 4_102_444_800_000 }).map((t) => t - (t % 1_000)),
  fc.constantFrom(0, -1, 1, 999, 1_000, -62_135_596_800_000, 253_402_300_799_999),
);
const id = fc.string({ maxLength: 12, unit: "grapheme" });

const receiptChange = fc.record({
  type: fc.constantFrom("group" as const, "c2c" as const),
  conversationId: id,
  messageId: id,
  senderId: id,
  receiverId: id,
  sentAt: ms,
  readCount: fc.nat({ max: 100_000 }),
  unreadCount: fc.nat({ max: 100_000 }),
  receiverRead: fc.boolean(),
  receiverReadAt: fc.option(ms, { nil: undefined }),
  readerId: id,
  readAt: ms,
});

const change: fc.Arbitrary<ReceiptChange> = fc.oneof(
  receiptChange.map(
    (r): ReceiptChange => ({
      kind: "receipt",
      readerId: r.readerId,
      readAt: r.readAt,
      receipt: {
        message: {
          conversationId: r.conversationId,
          conversationType: r.type,
          messageId: r.messageId,
          senderId: r.senderId,
          sentAt: r.sentAt,
          receiverId: r.receiverId,
        },
        readCount: r.readCount,
        unreadCount: r.unreadCount,
        receiverRead: r.receiverRead,
        ...(r.receiverReadAt === undefined ? {} : { receiverReadAt: r.receiverReadAt }),
      },
    }),
  ),
  fc
    .record({ conversationId: id, readerId: id, readUpTo: ms })
    .map((h): ReceiptChange => ({ kind: "horizon", ...h })),
  fc
    .record({
      conversationId: id,
      messages: fc.array(fc.record({ messageId: id, senderId: id }), { maxLength: 5 }),
      deletedAt: ms,
    })
    .map((d): ReceiptChange => ({ kind: "deletion", ...d })),
);

function viaToJson(c: ReceiptChange): unknown {
  const update = changeToProto(c);
  const all = { alwaysEmitImplicit: true };
  switch (update.case) {
    case "receipt":
      return toJson(ReceiptUpdateSchema, update.value, all);
    case "readHorizon":
      return toJson(ReadHorizonUpdateSchema, update.value, all);
    case "messageDeleted":
      return toJson(MessageDeletedUpdateSchema, update.value, all);
    default:
      throw new Error(`unexpected ${update.case}`);
  }
}

describe("webhook event data", () => {
  it("is the JSON text protobuf's toJson writes for the same update, for any change", () => {
    fc.assert(
      fc.property(change, fc.string(), (c, position) => {
        const data = webhookEventOf("t", { position, change: c }).data;
        expect(JSON.stringify(data)).toBe(JSON.stringify(viaToJson(c)));
      }),
      { numRuns: 5_000 },
    );
  });

  it("is stamped with its instant as Date.toISOString writes it, and carries it in ms", () => {
    const instantOf = (c: ReceiptChange) =>
      c.kind === "receipt" ? c.readAt : c.kind === "horizon" ? c.readUpTo : c.deletedAt;
    fc.assert(
      fc.property(change, (c) => {
        const event = webhookEventOf("t", { position: "1", change: c });
        expect(event.timestamp).toBe(new Date(instantOf(c)).toISOString());
        expect(event.occurredAt).toBe(instantOf(c));
      }),
      { numRuns: 5_000 },
    );
    // Fractions of a millisecond (a Timestamp's nanos) too: toISOString drops them.
    const horizon = { kind: "horizon", conversationId: "c", readerId: "r" } as const;
    for (const readUpTo of [1.5, 1_790_000_000_000.25]) {
      const event = webhookEventOf("t", { position: "1", change: { ...horizon, readUpTo } });
      expect(event.timestamp).toBe(new Date(readUpTo).toISOString());
    }
  });

  it("refuses a time outside a Timestamp's range as toJson does", () => {
    const horizon = (readUpTo: number): ReceiptChange => ({
      kind: "horizon",
      conversationId: "c",
      readerId: "r",
      readUpTo,
    });
    for (const t of [253_402_300_800_000, -62_135_596_800_001]) {
      expect(() => webhookEventOf("t", { position: "1", change: horizon(t) })).toThrow();
      expect(() => viaToJson(horizon(t))).toThrow();
    }
  });
});
