import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { ConversationType, MessageReceiptSchema } from "../gen/receipts/v1/receipts_pb.js";
import { EraseUserResponseSchema } from "../gen/receipts/v1/user_data_pb.js";
import { describeReceipt } from "../src/cli/output.js";
import { erasureProgressText } from "../src/cli/user-data-commands.js";
import { minutes } from "./support/fixtures.js";

const removed = {
  horizons: 1,
  horizon_set_times: 1,
  receipts: 500,
  memberships: 0,
  messages_pseudonymised: 0,
  index_entries: 0,
};

describe("the CLI's erasure output", () => {
  it("draws a bar with one share per step on a terminal, and plain lines otherwise", () => {
    const underWay = create(EraseUserResponseSchema, { step: "receipts", removed });
    expect(erasureProgressText("carol", underWay, 3, true)).toBe(
      "[########----------------] erasing carol: call 3, step 3/6 receipts; removed 1 horizons, 1 horizon set times, 500 receipts, 0 memberships, 0 messages pseudonymised, 0 index entries",
    );
    const done = create(EraseUserResponseSchema, { done: true, removed });
    expect(erasureProgressText("carol", done, 9, true)).toMatch(
      /^\[#{24}\] erasing carol: call 9, done;/,
    );
    expect(erasureProgressText("carol", underWay, 3, false)).toMatch(
      /^erasing carol: call 3, step 3\/6/,
    );
  });

  it("names an erased sender or receiver as such", () => {
    const receipt = create(MessageReceiptSchema, {
      conversationId: "dm",
      conversationType: ConversationType.C2C,
      messageId: "d1",
      senderId: "alice",
      receiverId: "",
      sentAt: timestampFromMs(minutes(1)),
    });
    expect(describeReceipt(receipt)).toBe(
      "d1  unread by (erased user)  (c2c dm, from alice, sent 2026-01-01T00:01:00.000Z)",
    );
    expect(describeReceipt({ ...receipt, senderId: "", receiverId: "bob" })).toContain(
      "from (erased user)",
    );
  });
});
