import { describe, expect, it } from "vitest";
import { c2cParticipants, isMemberAt, type TrackedMessage } from "../src/domain/model.js";

describe("membership intervals [joined_at, left_at)", () => {
  const intervals = [
    { joinedAt: 10, leftAt: 20 },
    { joinedAt: 30, leftAt: undefined },
  ];

  it("include their start and exclude their end", () => {
    expect([9, 10, 19, 20, 29].map((t) => isMemberAt(intervals, t))).toEqual([
      false,
      true,
      true,
      false,
      false,
    ]);
  });

  it("stay open while left_at is unset", () => {
    expect([30, 1e15].map((t) => isMemberAt(intervals, t))).toEqual([true, true]);
  });

  it("hold nobody when empty ([t, t): left and rejoined within a millisecond)", () => {
    expect(isMemberAt([{ joinedAt: 5, leftAt: 5 }], 5)).toBe(false);
    expect(isMemberAt([], 5)).toBe(false);
  });
});

describe("the participants of a conversation", () => {
  const message = (
    type: "c2c" | "group",
    senderId: string,
    receiverId: string,
  ): TrackedMessage => ({
    conversationId: "c",
    conversationType: type,
    messageId: "m",
    senderId,
    sentAt: 0,
    receiverId,
  });

  it("are the C2C pair, sorted whoever sent", () => {
    expect(c2cParticipants(message("c2c", "zoe", "adam"))).toEqual(["adam", "zoe"]);
    expect(c2cParticipants(message("c2c", "adam", "zoe"))).toEqual(["adam", "zoe"]);
  });

  it("are none for a group", () => {
    expect(c2cParticipants(message("group", "zoe", ""))).toEqual([]);
  });
});
