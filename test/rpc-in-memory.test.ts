import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import {
  ConversationType,
  ReadFilter,
  ReadReceiptService,
} from "../gen/receipts/v1/receipts_pb.js";
import { fieldAtFault } from "./support/error-details.js";
import { minutes } from "./support/fixtures.js";
import { type InMemoryApi, openInMemoryApi } from "./support/in-memory-api.js";

let api: InMemoryApi;
beforeEach(async () => {
  api = await openInMemoryApi();
});
afterEach(async () => {
  await api?.close();
});

async function groupWithTwoMessages() {
  const receipts = createClient(ReadReceiptService, api.transport);
  const members = createClient(MembershipService, api.transport);
  await members.addMembers({
    groupId: "g",
    userIds: ["alice", "bob", "carol"],
    joinedAt: timestampFromMs(minutes(0)),
  });
  const tracked = await receipts.trackMessages({
    messages: ["m1", "m2"].map((messageId, i) => ({
      conversationId: "g",
      conversationType: ConversationType.GROUP,
      messageId,
      senderId: "alice",
      sentAt: timestampFromMs(minutes(10 + i)),
    })),
  });
  expect(tracked.trackedCount).toBe(2);
  return { receipts, members };
}

describe("the API in memory (createRouterTransport)", () => {
  it("tracks, receipts, counts and lists through the routes, the domain and the store", async () => {
    const { receipts } = await groupWithTwoMessages();
    const sent = await receipts.sendReceipts({
      conversationId: "g",
      readerId: "bob",
      messageIds: ["m1"],
    });
    expect(sent.receipts[0]).toMatchObject({ messageId: "m1", readCount: 1, unreadCount: 1 });
    const again = await receipts.sendReceipts({
      conversationId: "g",
      readerId: "bob",
      messageIds: ["m1"],
    });
    expect(again.receipts[0]).toMatchObject({ readCount: 1, unreadCount: 1 });

    const got = await receipts.getReceipts({ conversationId: "g", messageIds: ["m2", "m1"] });
    expect(got.receipts.map((r) => [r.messageId, r.readCount, r.unreadCount])).toEqual([
      ["m2", 0, 2],
      ["m1", 1, 1],
    ]);
    const unread = await receipts.listReadMembers({
      conversationId: "g",
      messageId: "m1",
      filter: ReadFilter.UNREAD,
    });
    expect(unread.members.map((m) => m.userId)).toEqual(["carol"]);

    const marked = await receipts.markConversationRead({
      conversationId: "g",
      readerId: "carol",
      readUpTo: timestampFromMs(minutes(20)),
    });
    expect(marked.markedCount).toBe(2);
    const after = await receipts.getReceipts({ conversationId: "g", messageIds: ["m1", "m2"] });
    expect(after.receipts.map((r) => r.readCount)).toEqual([2, 1]);
  });

  it("refuses a call naming an untracked message with NOT_FOUND and the field, storing none of it", async () => {
    const { receipts } = await groupWithTwoMessages();
    const error = await receipts
      .sendReceipts({ conversationId: "g", readerId: "bob", messageIds: ["m1", "missing"] })
      .catch((reason: unknown) => ConnectError.from(reason));
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.NotFound);
    expect(fieldAtFault(error as ConnectError)).toBe("message_ids[1]");
    const got = await receipts.getReceipts({ conversationId: "g", messageIds: ["m1"] });
    expect(got.receipts[0]?.readCount).toBe(0);
  });

  it("answers a malformed request with INVALID_ARGUMENT naming the field", async () => {
    const { members } = await groupWithTwoMessages();
    const error = await members
      .addMembers({ groupId: "", userIds: ["dave"], joinedAt: timestampFromMs(minutes(1)) })
      .catch((reason: unknown) => ConnectError.from(reason));
    expect((error as ConnectError).code).toBe(Code.InvalidArgument);
    expect(fieldAtFault(error as ConnectError)).toBe("group_id");
    const listed = await members.listMembers({ groupId: "g" });
    expect(listed.members.map((m) => m.userId)).toEqual(["alice", "bob", "carol"]);
  });

  it("delivers a receipt to a watcher of the conversation", async () => {
    const { receipts } = await groupWithTwoMessages();
    const abort = new AbortController();
    const stream = receipts
      .watchReceipts({ conversationIds: ["g"] }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    expect((await stream.next()).value?.update.case).toBe("heartbeat");
    await receipts.sendReceipts({ conversationId: "g", readerId: "bob", messageIds: ["m2"] });
    let next = await stream.next();
    while (next.value?.update.case === "heartbeat") next = await stream.next();
    expect(next.value?.update.case).toBe("receipt");
    if (next.value?.update.case === "receipt") {
      expect(next.value.update.value.readerId).toBe("bob");
      expect(next.value.update.value.receipt?.messageId).toBe("m2");
    }
    abort.abort();
  });
});
