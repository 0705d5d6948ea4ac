import { describe, expect, it } from "vitest";
import type { PendingOutcome } from "../src/domain/change-announcer.js";
import { describeDeletions } from "../src/domain/deletion-outcomes.js";
import { type PendingChange, pendingDeletion, type TrackedMessage } from "../src/domain/model.js";

const message = (messageId: string): TrackedMessage => ({
  conversationId: "g",
  conversationType: "group",
  messageId,
  senderId: "alice",
  sentAt: 1,
  receiverId: "",
});

describe("describing pending deletions for the outbox sweep", () => {
  it("completes each deletion again, announces those whose marker is stored, and keeps the order", async () => {
    const completed: string[][] = [];
    const privateRemoved: string[][] = [];
    const store = {
      async deleteMessages(_tenant: string, _conversation: string, ids: readonly string[]) {
        completed.push([...ids]);
        return [];
      },
      async deletedMessages(_tenant: string, ids: readonly string[]) {
        return new Map(ids.filter((id) => id !== "m2").map((id) => [id, message(id)]));
      },
      async deletePrivateReceiptsOf(_tenant: string, ids: readonly string[]) {
        privateRemoved.push([...ids]);
        return 0;
      },
    };
    const receipt: PendingChange = {
      kind: "receipt",
      tenant: "t",
      conversationId: "g",
      messageId: "m9",
      readerId: "bob",
      readAt: 5,
    };
    const pending = [
      pendingDeletion("t", message("m1"), 10),
      receipt,
      pendingDeletion("t", message("m2"), 11),
    ];
    const others: PendingOutcome[] = [{ kind: "gone" }];
    const outcomes = await describeDeletions(store, "t", pending, async (facts) => {
      expect(facts).toEqual([receipt]);
      return others;
    });
    expect(completed).toEqual([["m1", "m2"]]);
    // A deletion's private reads go with it, also when the sweep completes it.
    expect(privateRemoved).toEqual([["m1", "m2"]]);
    expect(outcomes).toEqual([
      {
        kind: "announce",
        change: {
          kind: "deletion",
          conversationId: "g",
          messages: [{ messageId: "m1", senderId: "alice" }],
          deletedAt: 10,
        },
      },
      { kind: "gone" },
      // Its marker is not stored: the call may still be running; looked at again later.
      { kind: "not-stored" },
    ]);
  });
});
