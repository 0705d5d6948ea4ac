import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import {
  ConversationType,
  ReadFilter,
  ReadReceiptService,
  type WatchReceiptsResponse,
  WatchReceiptsResponseSchema,
} from "../gen/receipts/v1/receipts_pb.js";
import { fieldAtFault } from "./support/error-details.js";
import { minutes } from "./support/fixtures.js";
import { createGrpcJsClient, serverStream, unary } from "./support/grpc-js-client.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.stop();
});

const transports: Record<string, () => Transport> = {
  "Connect JSON over HTTP/1.1": () =>
    createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
  "Connect binary over HTTP/2": () =>
    createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "2", useBinaryFormat: true }),
  "gRPC over HTTP/2 (connect-node)": () => createGrpcTransport({ baseUrl: server.baseUrl }),
  "gRPC-Web over HTTP/1.1": () =>
    createGrpcWebTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
};

/** Reads stream messages until one satisfies `done`, skipping heartbeats. */
async function nextUpdates(
  stream: AsyncIterator<WatchReceiptsResponse>,
  count: number,
): Promise<WatchReceiptsResponse[]> {
  const updates: WatchReceiptsResponse[] = [];
  while (updates.length < count) {
    const next = await stream.next();
    if (next.done) throw new Error("stream ended early");
    if (next.value.update.case !== "heartbeat") updates.push(next.value);
  }
  return updates;
}

describe.each(Object.entries(transports))("every RPC through %s", (name, makeTransport) => {
  it("tracks, receipts, counts, lists, marks read and watches", async () => {
    const transport = makeTransport();
    const receipts = createClient(ReadReceiptService, transport);
    const members = createClient(MembershipService, transport);
    const g = `g-${name}`;
    const m1 = `m1-${name}`;
    const m2 = `m2-${name}`;

    await members.addMembers({
      groupId: g,
      userIds: ["alice", "bob", "carol"],
      joinedAt: timestampFromMs(minutes(0)),
    });
    const tracked = await receipts.trackMessages({
      messages: [m1, m2].map((messageId, i) => ({
        conversationId: g,
        conversationType: ConversationType.GROUP,
        messageId,
        senderId: "alice",
        sentAt: timestampFromMs(minutes(10 + i)),
      })),
    });
    expect(tracked.trackedCount).toBe(2);

    const abort = new AbortController();
    const stream = receipts
      .watchReceipts({ conversationIds: [g] }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    const opened = await stream.next();
    expect(opened.value?.update.case).toBe("heartbeat");
    expect(opened.value?.resumeToken).not.toBe("");

    const sent = await receipts.sendReceipts({
      conversationId: g,
      readerId: "bob",
      messageIds: [m1],
    });
    expect(sent.receipts[0]).toMatchObject({ messageId: m1, readCount: 1, unreadCount: 1 });
    const [update] = await nextUpdates(stream, 1);
    expect(update?.update.case).toBe("receipt");
    if (update?.update.case === "receipt") {
      expect(update.update.value.readerId).toBe("bob");
      expect(update.update.value.receipt).toMatchObject({
        messageId: m1,
        readCount: 1,
        unreadCount: 1,
      });
      expect(update.update.value.readAt).toBeDefined();
    }

    const got = await receipts.getReceipts({ conversationId: g, messageIds: [m2, m1] });
    expect(got.receipts.map((r) => [r.messageId, r.readCount, r.unreadCount])).toEqual([
      [m2, 0, 2],
      [m1, 1, 1],
    ]);

    const read = await receipts.listReadMembers({
      conversationId: g,
      messageId: m1,
      filter: ReadFilter.READ,
    });
    expect(read.members.map((m) => m.userId)).toEqual(["bob"]);
    expect(read.members[0]?.readAt).toBeDefined();
    expect(read.isFinished).toBe(true);
    const unread = await receipts.listReadMembers({
      conversationId: g,
      messageId: m1,
      filter: ReadFilter.UNREAD,
      pageSize: 1,
    });
    expect(unread.members.map((m) => m.userId)).toEqual(["carol"]);

    const marked = await receipts.markConversationRead({
      conversationId: g,
      readerId: "carol",
      readUpTo: timestampFromMs(minutes(20)),
    });
    expect(marked.markedCount).toBe(2);
    const after = await nextUpdates(stream, 3);
    expect(after.map((u) => u.update.case)).toEqual(["receipt", "receipt", "readHorizon"]);
    abort.abort();

    const listed = await members.listMembers({ groupId: g });
    expect(listed.members.map((m) => m.userId)).toEqual(["alice", "bob", "carol"]);
    expect(
      (
        await members.removeMembers({
          groupId: g,
          userIds: ["bob"],
          leftAt: timestampFromMs(minutes(30)),
        })
      ).removedCount,
    ).toBe(1);

    const error = await receipts
      .sendReceipts({ conversationId: g, readerId: "bob", messageIds: [m1, "missing"] })
      .catch((reason: unknown) => ConnectError.from(reason));
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.NotFound);
    expect((error as ConnectError).rawMessage).toContain("message_ids[1]");
    expect(fieldAtFault(error as ConnectError)).toBe("message_ids[1]");
  });
});

describe("a stock @grpc/grpc-js client", () => {
  let receipts: grpc.Client;
  let members: grpc.Client;
  beforeAll(() => {
    receipts = createGrpcJsClient(ReadReceiptService, server.address);
    members = createGrpcJsClient(MembershipService, server.address);
  });
  afterAll(() => {
    receipts?.close();
    members?.close();
  });

  it("calls every RPC, including the stream", async () => {
    await unary(members, "addMembers", {
      groupId: "gj",
      userIds: ["s", "r1", "r2"],
      joinedAt: timestampFromMs(minutes(0)),
    });
    const tracked = await unary<{ trackedCount: number }>(receipts, "trackMessages", {
      messages: [
        {
          conversationId: "gj",
          conversationType: ConversationType.GROUP,
          messageId: "gj-1",
          senderId: "s",
          sentAt: timestampFromMs(minutes(5)),
        },
      ],
    });
    expect(tracked.trackedCount).toBe(1);

    const stream = serverStream<WatchReceiptsResponse>(receipts, "watchReceipts", {
      senderId: "s",
    });
    const received: WatchReceiptsResponse[] = [];
    const gotUpdate = new Promise<void>((resolve, reject) => {
      stream.on("data", (message: WatchReceiptsResponse) => {
        received.push(message);
        if (message.update.case === "receipt") resolve();
      });
      stream.on("error", (error: grpc.ServiceError) => {
        if (error.code !== grpc.status.CANCELLED) reject(error);
      });
    });
    await new Promise<void>((resolve) => stream.once("data", () => resolve()));

    const sent = await unary<{ receipts: { readCount: number }[] }>(receipts, "sendReceipts", {
      conversationId: "gj",
      readerId: "r1",
      messageIds: ["gj-1"],
    });
    expect(sent.receipts[0]?.readCount).toBe(1);
    await gotUpdate;
    const update = received.find((m) => m.update.case === "receipt");
    expect(update?.update.case === "receipt" && update.update.value.readerId).toBe("r1");
    stream.cancel();

    const got = await unary<{ receipts: { readCount: number; unreadCount: number }[] }>(
      receipts,
      "getReceipts",
      {
        conversationId: "gj",
        messageIds: ["gj-1"],
      },
    );
    expect(got.receipts[0]).toMatchObject({ readCount: 1, unreadCount: 1 });
    const unread = await unary<{ members: { userId: string }[]; isFinished: boolean }>(
      receipts,
      "listReadMembers",
      {
        conversationId: "gj",
        messageId: "gj-1",
        filter: ReadFilter.UNREAD,
      },
    );
    expect(unread.members.map((m) => m.userId)).toEqual(["r2"]);
    const marked = await unary<{ markedCount: number }>(receipts, "markConversationRead", {
      conversationId: "gj",
      readerId: "r2",
    });
    expect(marked.markedCount).toBe(1);
    const listed = await unary<{ members: unknown[] }>(members, "listMembers", { groupId: "gj" });
    expect(listed.members).toHaveLength(3);
    const removed = await unary<{ removedCount: number }>(members, "removeMembers", {
      groupId: "gj",
      userIds: ["r2"],
    });
    expect(removed.removedCount).toBe(1);
  });

  it("gets the gRPC status code and the field at fault", async () => {
    const error = await unary(receipts, "sendReceipts", {
      conversationId: "gj",
      readerId: "r1",
      messageIds: [],
    }).catch((reason: grpc.ServiceError) => reason);
    expect((error as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((error as grpc.ServiceError).details).toContain("message_ids");
    const denied = await unary(receipts, "sendReceipts", {
      conversationId: "gj",
      readerId: "nobody",
      messageIds: ["gj-1"],
    }).catch((reason: grpc.ServiceError) => reason);
    expect((denied as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);
  });
});

describe("malformed traffic", () => {
  it("answers a body that is not a message with a clear error and keeps serving", async () => {
    const response = await fetch(`${server.baseUrl}/receipts.v1.ReadReceiptService/GetReceipts`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    expect(response.status).toBe(400);
    const binary = await fetch(`${server.baseUrl}/receipts.v1.ReadReceiptService/GetReceipts`, {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]),
    });
    // Like grpc-go, connect-es answers an undecodable protobuf body with INTERNAL, naming the parse error.
    expect(binary.status).toBe(500);
    expect(await binary.json()).toMatchObject({
      code: "internal",
      message: expect.stringContaining("parse binary"),
    });
    const unknown = await fetch(`${server.baseUrl}/receipts.v1.ReadReceiptService/Nope`, {
      method: "POST",
    });
    expect(unknown.status).toBe(404);
    const client = createClient(
      ReadReceiptService,
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
    );
    const error = await client
      .getReceipts({ conversationId: "x", messageIds: ["y"] })
      .catch((e: unknown) => ConnectError.from(e));
    expect((error as ConnectError).code).toBe(Code.NotFound);
  });

  it("encodes a stream message the same for every protocol", () => {
    // Guards the oneof mapping used by the stream handler.
    const message = create(WatchReceiptsResponseSchema, {
      update: { case: "heartbeat", value: {} },
      resumeToken: "x",
    });
    expect(message.update.case).toBe("heartbeat");
  });
});
