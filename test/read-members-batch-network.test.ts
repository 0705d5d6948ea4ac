import { execFile } from "node:child_process";
import { chmodSync } from "node:fs";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import {
  ConversationType,
  ReadFilter,
  ReadReceiptService,
} from "../gen/receipts/v1/receipts_pb.js";
import { buildService, root } from "./support/built-service.js";
import { fieldAtFault } from "./support/error-details.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const run = promisify(execFile);

/** BatchGetReadMembers and receiver_read_at over the network, as the README shows them. */
describe("BatchGetReadMembers and receiver_read_at on a running server", () => {
  let server: TestServer;
  let build: ReturnType<typeof buildService>;
  let receipts: ReturnType<typeof createClient<typeof ReadReceiptService>>;
  let bobReadMsg1At: number;

  /** curl with the README's flags: Connect JSON over HTTP/1.1. */
  const curl = async (method: string, body: unknown): Promise<Record<string, unknown>> => {
    const { stdout } = await run("curl", [
      "-s",
      `${server.baseUrl}/receipts.v1.ReadReceiptService/${method}`,
      "-H",
      "content-type: application/json",
      "-d",
      JSON.stringify(body),
    ]);
    return JSON.parse(stdout) as Record<string, unknown>;
  };

  beforeAll(async () => {
    build = buildService("read-members-batch");
    server = await startTestServer();
    const transport = createGrpcTransport({ baseUrl: server.baseUrl });
    receipts = createClient(ReadReceiptService, transport);
    await createClient(MembershipService, transport).addMembers({
      groupId: "team",
      userIds: ["alice", "bob", "carol"],
      joinedAt: timestampFromMs(Date.parse("2026-01-01T09:00:00Z")),
    });
    await receipts.trackMessages({
      messages: [
        {
          conversationId: "team",
          conversationType: ConversationType.GROUP,
          messageId: "msg-1",
          senderId: "alice",
          sentAt: timestampFromMs(Date.parse("2026-01-02T10:00:00Z")),
        },
        {
          conversationId: "dm-alice-bob",
          conversationType: ConversationType.C2C,
          messageId: "msg-2",
          senderId: "alice",
          receiverId: "bob",
          sentAt: timestampFromMs(Date.parse("2026-01-02T10:01:00Z")),
        },
      ],
    });
    bobReadMsg1At = Date.now();
    await receipts.sendReceipts({ conversationId: "team", readerId: "bob", messageIds: ["msg-1"] });
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    build?.remove();
  });

  it("answers the README's curl with the receipt and both first pages", async () => {
    const answer = await curl("BatchGetReadMembers", {
      conversationId: "team",
      messageIds: ["msg-1"],
      pageSize: 20,
    });
    expect(answer).toEqual({
      messageReadMembers: [
        {
          receipt: {
            conversationId: "team",
            conversationType: "CONVERSATION_TYPE_GROUP",
            messageId: "msg-1",
            senderId: "alice",
            readCount: 1,
            unreadCount: 1,
            sentAt: "2026-01-02T10:00:00Z",
          },
          readMembers: [{ userId: "bob", readAt: expect.any(String) }],
          unreadMembers: [{ userId: "carol" }],
        },
      ],
    });
    const readAt = Date.parse(
      ((answer.messageReadMembers as { readMembers: { readAt: string }[] }[])[0]?.readMembers[0]
        ?.readAt ?? "") as string,
    );
    expect(readAt).toBeGreaterThanOrEqual(bobReadMsg1At);
  });

  it("names the field at fault over gRPC and refuses more than 50 ids", async () => {
    const refused = async (messageIds: string[]) =>
      ConnectError.from(
        await receipts.batchGetReadMembers({ conversationId: "team", messageIds }).then(
          () => new Error("expected a refusal"),
          (error: unknown) => error,
        ),
      );
    const tooMany = await refused(Array.from({ length: 51 }, () => "msg-1"));
    expect(tooMany.code).toBe(Code.InvalidArgument);
    expect(fieldAtFault(tooMany)).toBe("message_ids");
    const unknown = await refused(["msg-1", "nope"]);
    expect(unknown.code).toBe(Code.NotFound);
    expect(fieldAtFault(unknown)).toBe("message_ids[1]");
    const fifty = await receipts.batchGetReadMembers({
      conversationId: "team",
      messageIds: Array.from({ length: 50 }, () => "msg-1"),
    });
    expect(fifty.messageReadMembers).toHaveLength(50);
  });

  it("gives receiver_read_at the time of the read in GetReceipts, watch updates and the batch, not of the answer", async () => {
    const watch = new AbortController();
    const updates = receipts.watchReceipts(
      { conversationIds: ["dm-alice-bob"] },
      { signal: watch.signal },
    );
    const iterator = updates[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.update.case).toBe("heartbeat");
    const before = Date.now();
    await receipts.markConversationRead({ conversationId: "dm-alice-bob", readerId: "bob" });
    const after = Date.now();
    const update = (await iterator.next()).value;
    watch.abort();
    expect(update?.update.case).toBe("receipt");
    const watched = update?.update.case === "receipt" ? update.update.value : undefined;
    const readAt = timestampMs(watched?.receipt?.receiverReadAt ?? timestampFromMs(0));
    expect(readAt).toBeGreaterThanOrEqual(before);
    expect(readAt).toBeLessThanOrEqual(after);
    expect(timestampMs(watched?.readAt ?? timestampFromMs(0))).toBe(readAt);

    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const got = await curl("GetReceipts", {
      conversationId: "dm-alice-bob",
      messageIds: ["msg-2"],
    });
    const receipt = (got.receipts as Record<string, unknown>[])[0];
    expect(receipt).toMatchObject({ receiverRead: true, readCount: 1 });
    expect(Date.parse(receipt?.receiverReadAt as string)).toBe(readAt);
    const [batched] = (
      await receipts.batchGetReadMembers({ conversationId: "dm-alice-bob", messageIds: ["msg-2"] })
    ).messageReadMembers;
    expect(timestampMs(batched?.receipt?.receiverReadAt ?? timestampFromMs(0))).toBe(readAt);
    expect(batched?.readMembers.map((m) => [m.userId, m.readAt && timestampMs(m.readAt)])).toEqual([
      ["bob", readAt],
    ]);
    // A receipt sent again later answers the first read's time.
    const [again] = (
      await receipts.sendReceipts({
        conversationId: "dm-alice-bob",
        readerId: "bob",
        messageIds: ["msg-2"],
      })
    ).receipts;
    expect(timestampMs(again?.receiverReadAt ?? timestampFromMs(0))).toBe(readAt);
    // An unread C2C message has no time.
    const unread = await createClient(
      ReadReceiptService,
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
    ).getReceipts({ conversationId: "team", messageIds: ["msg-1"] });
    expect(unread.receipts[0]?.receiverReadAt).toBeUndefined();
  });

  it("continues a page with ListReadMembers through the token it returns", async () => {
    const pagesOfOne = async () =>
      (
        await receipts.batchGetReadMembers({
          conversationId: "team",
          messageIds: ["msg-1"],
          pageSize: 1,
        })
      ).messageReadMembers[0];
    const first = await pagesOfOne();
    expect(first?.readMembers.map((m) => m.userId)).toEqual(["bob"]);
    expect(first?.unreadMembers.map((m) => m.userId)).toEqual(["carol"]);
    // One member per side fits a page of one exactly: the lists are finished.
    expect(first?.readNextPageToken).toBe("");
    await receipts.sendReceipts({
      conversationId: "team",
      readerId: "carol",
      messageIds: ["msg-1"],
    });
    const both = await pagesOfOne();
    expect(both?.readMembers.map((m) => m.userId)).toEqual(["bob"]);
    const next = await receipts.listReadMembers({
      conversationId: "team",
      messageId: "msg-1",
      filter: ReadFilter.READ,
      pageSize: 1,
      pageToken: both?.readNextPageToken ?? "",
    });
    expect(next.members.map((m) => m.userId)).toEqual(["carol"]);
    expect(next.isFinished).toBe(true);
  });

  it("prints each message's readers and unread members with the who-read command", async () => {
    const cli = join(build.dir, "src", "cli", "main.js");
    chmodSync(cli, 0o755);
    const env = {
      ...process.env,
      PATH: `${join(root, "node_modules", ".bin")}${delimiter}${process.env.PATH ?? ""}`,
      RECEIPTS_URL: server.baseUrl,
      RECEIPTS_TOKEN: "",
    };
    const { stdout } = await run(cli, ["who-read", "--conversation", "dm-alice-bob", "msg-2"], {
      env,
    });
    const lines = stdout.trim().split("\n");
    expect(lines[0]).toMatch(
      /^msg-2 {2}read by bob at \d{4}-\d\d-\d\dT[\d:.]+Z {2}\(c2c dm-alice-bob, from alice/,
    );
    expect(lines[1]).toMatch(/^ {2}read: bob \(\d{4}-\d\d-\d\dT[\d:.]+Z\)$/);
    expect(lines[2]).toBe("  unread: -");
    const paged = await run(
      cli,
      ["who-read", "--conversation", "team", "--page-size", "1", "msg-1"],
      { env },
    );
    expect(paged.stdout).toMatch(
      /\n {2}more read: receipts members --conversation team --message msg-1 --filter read --page-token \S+\n/,
    );
    const json = await run(cli, ["who-read", "--json", "--conversation", "team", "msg-1"], { env });
    const parsed = JSON.parse(json.stdout) as {
      messageReadMembers: { readMembers: { userId: string }[] }[];
    };
    expect(parsed.messageReadMembers[0]?.readMembers.map((m) => m.userId)).toEqual([
      "bob",
      "carol",
    ]);
  });
});
