import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type CallOptions, Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MessageLifecycleService } from "../gen/receipts/v1/lifecycle_pb.js";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import {
  ConversationType,
  ReadFilter,
  ReadReceiptService,
  type WatchReceiptsResponse,
} from "../gen/receipts/v1/receipts_pb.js";
import {
  bearer,
  expectCode,
  mintToken,
  newApiKey,
  secretBytes,
  uniqueTenant,
} from "./support/auth-fixtures.js";
import { fieldAtFault } from "./support/error-details.js";
import { minutes } from "./support/fixtures.js";
import { startTestServer, type TestServer } from "./support/test-server.js";
import { quickWebhooks } from "./support/webhook-fixtures.js";
import { newWebhookSecret, WebhookReceiver } from "./support/webhook-receiver.js";

/**
 * DeleteMessages over the network (Connect): who may call it, what later calls about a deleted
 * message answer, the message_deleted update of streams (live and replayed), the
 * message.deleted webhook, and a tenant's retention at TrackMessages.
 */
const tenant = { id: uniqueTenant("lifecycle"), key: newApiKey(), secret: newApiKey() };
let server: TestServer;
let hooks: WebhookReceiver;

beforeAll(async () => {
  hooks = await new WebhookReceiver().listen();
  server = await startTestServer({
    ...quickWebhooks,
    RECEIPTS_TENANTS: JSON.stringify({
      tenants: [
        {
          id: tenant.id,
          apiKeys: [tenant.key],
          userTokens: { keys: [{ alg: "HS256", secret: tenant.secret }] },
          retentionDays: 30,
          webhooks: [
            {
              id: "deletions",
              url: hooks.url,
              secrets: [newWebhookSecret()],
              events: ["message.deleted"],
            },
          ],
        },
      ],
    }),
  });
});
afterAll(async () => {
  await server?.stop();
  await hooks?.close();
});

const service = bearer(tenant.key);
const transport = () => createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" });
const clients = () => ({
  receipts: createClient(ReadReceiptService, transport()),
  members: createClient(MembershipService, transport()),
  lifecycle: createClient(MessageLifecycleService, transport()),
});
const asUser = async (sub: string): Promise<CallOptions> =>
  bearer(await mintToken({ tenant: tenant.id, sub, key: secretBytes(tenant.secret) }));

/** Group `groupId` with alice, bob, carol; messages by alice sent just now (within retention). */
async function seed(groupId: string, messageIds: readonly string[], senderOf = () => "alice") {
  const { receipts, members } = clients();
  const now = Date.now();
  await members.addMembers(
    { groupId, userIds: ["alice", "bob", "carol"], joinedAt: timestampFromMs(now - 60_000) },
    service,
  );
  await receipts.trackMessages(
    {
      messages: messageIds.map((messageId, i) => ({
        conversationId: groupId,
        conversationType: ConversationType.GROUP,
        messageId,
        senderId: senderOf(),
        sentAt: timestampFromMs(now - 1_000 + i),
      })),
    },
    service,
  );
}

describe("DeleteMessages over the network", () => {
  it("is for the tenant's backend only: a user token is PERMISSION_DENIED and deletes nothing", async () => {
    await seed("g-auth", ["g-auth-1"]);
    const { lifecycle, receipts } = clients();
    await expectCode(
      lifecycle.deleteMessages(
        { conversationId: "g-auth", messageIds: ["g-auth-1"] },
        await asUser("alice"),
      ),
      Code.PermissionDenied,
    );
    const found = await receipts.getReceipts(
      { conversationId: "g-auth", messageIds: ["g-auth-1"] },
      service,
    );
    expect(found.receipts).toHaveLength(1);
  });

  it("answers NOT_FOUND, with the field, for every later call about a deleted message; deleting again deletes 0", async () => {
    await seed("g-nf", ["g-nf-1", "g-nf-2"]);
    const { lifecycle, receipts } = clients();
    await receipts.sendReceipts(
      { conversationId: "g-nf", readerId: "bob", messageIds: ["g-nf-1"] },
      service,
    );
    const request = { conversationId: "g-nf", messageIds: ["g-nf-1", "never-tracked"] };
    expect((await lifecycle.deleteMessages(request, service)).deletedCount).toBe(1);
    expect((await lifecycle.deleteMessages(request, service)).deletedCount).toBe(0);

    const sent = await expectCode(
      receipts.sendReceipts(
        { conversationId: "g-nf", readerId: "carol", messageIds: ["g-nf-2", "g-nf-1"] },
        service,
      ),
      Code.NotFound,
    );
    expect(fieldAtFault(sent)).toBe("message_ids[1]");
    const got = await expectCode(
      receipts.getReceipts({ conversationId: "g-nf", messageIds: ["g-nf-1"] }, service),
      Code.NotFound,
    );
    expect(fieldAtFault(got)).toBe("message_ids[0]");
    const listed = await expectCode(
      receipts.listReadMembers(
        { conversationId: "g-nf", messageId: "g-nf-1", filter: ReadFilter.READ },
        service,
      ),
      Code.NotFound,
    );
    expect(fieldAtFault(listed)).toBe("message_id");
    const bad = await expectCode(
      lifecycle.deleteMessages({ conversationId: "g-nf", messageIds: [] }, service),
      Code.InvalidArgument,
    );
    expect(fieldAtFault(bad)).toBe("message_ids");
  });

  it("sends watchers a message_deleted update live and on resume, without the deleted message's receipts", async () => {
    await seed("g-watch", ["g-watch-1", "g-watch-2"]);
    const { lifecycle, receipts } = clients();
    const abort = new AbortController();
    const updates: WatchReceiptsResponse[] = [];
    const stream = receipts.watchReceipts(
      { conversationIds: ["g-watch"] },
      { ...service, signal: abort.signal },
    );
    const following = (async () => {
      for await (const update of stream) {
        updates.push(update);
        if (update.update.case === "messageDeleted") return;
      }
    })().catch(() => undefined);
    await until(() => updates.length > 0); // the first heartbeat: the stream is live
    const start = updates[0]?.resumeToken ?? "";
    await receipts.sendReceipts(
      { conversationId: "g-watch", readerId: "bob", messageIds: ["g-watch-1", "g-watch-2"] },
      service,
    );
    await lifecycle.deleteMessages(
      { conversationId: "g-watch", messageIds: ["g-watch-1"] },
      service,
    );
    await following;
    abort.abort();
    const deleted = updates.at(-1);
    expect(deleted?.update.case).toBe("messageDeleted");
    if (deleted?.update.case !== "messageDeleted") throw new Error("no message_deleted update");
    expect(deleted.update.value).toMatchObject({
      conversationId: "g-watch",
      messageIds: ["g-watch-1"],
    });
    const deletedAt = deleted.update.value.deletedAt;
    expect(deletedAt && timestampDate(deletedAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(deleted.resumeToken).not.toBe("");

    // Resumed from before the receipts: the deleted message's receipt is no longer replayed.
    const replayed = await replay({ conversationIds: ["g-watch"], resumeToken: start });
    expect(replayed).toEqual([
      ["receipt", "g-watch-2"],
      ["messageDeleted", "g-watch-1"],
    ]);
  });

  it("shows a sender's watch only the deletions of its own messages", async () => {
    await seed("g-sender", ["g-sender-1", "g-sender-2"]);
    const { lifecycle, receipts, members } = clients();
    await members.addMembers(
      { groupId: "g-sender", userIds: ["dave"], joinedAt: timestampFromMs(Date.now() - 60_000) },
      service,
    );
    await receipts.trackMessages(
      {
        messages: [
          {
            conversationId: "g-sender",
            conversationType: ConversationType.GROUP,
            messageId: "g-sender-dave",
            senderId: "dave",
            sentAt: timestampFromMs(Date.now() - 500),
          },
        ],
      },
      service,
    );
    const head = await replay({ conversationIds: ["g-sender"] });
    expect(head).toEqual([]);
    const token = lastToken;
    await lifecycle.deleteMessages(
      { conversationId: "g-sender", messageIds: ["g-sender-1", "g-sender-dave"] },
      service,
    );
    await until(async () => (await replay({ senderId: "dave", resumeToken: token })).length > 0);
    expect(await replay({ senderId: "dave", resumeToken: token })).toEqual([
      ["messageDeleted", "g-sender-dave"],
    ]);
    expect(await replay({ senderId: "alice", resumeToken: token })).toEqual([
      ["messageDeleted", "g-sender-1"],
    ]);
  });

  it("posts a message.deleted webhook to endpoints that asked for it", async () => {
    await seed("g-hook", ["g-hook-1"]);
    const { lifecycle, receipts } = clients();
    await receipts.sendReceipts(
      { conversationId: "g-hook", readerId: "bob", messageIds: ["g-hook-1"] },
      service,
    );
    await lifecycle.deleteMessages({ conversationId: "g-hook", messageIds: ["g-hook-1"] }, service);
    const events = () => hooks.received.flatMap((r) => r.payload.events);
    await hooks.until(() => events().some((e) => e.data.conversationId === "g-hook"));
    const event = events().find((e) => e.data.conversationId === "g-hook");
    expect(event).toMatchObject({
      type: "message.deleted",
      data: { conversationId: "g-hook", messageIds: ["g-hook-1"] },
    });
    expect(Date.parse(event?.timestamp ?? "")).toBeGreaterThan(Date.now() - 60_000);
    // The endpoint asked for message.deleted only: no receipt.read was posted.
    expect(events().every((e) => e.type === "message.deleted")).toBe(true);
  });

  it("refuses to track a message sent before the tenant's retention (FAILED_PRECONDITION on its sent_at)", async () => {
    const { receipts } = clients();
    const error = await expectCode(
      receipts.trackMessages(
        {
          messages: [
            {
              conversationId: "g-old",
              conversationType: ConversationType.GROUP,
              messageId: "g-old-1",
              senderId: "alice",
              sentAt: timestampFromMs(minutes(0)),
            },
          ],
        },
        service,
      ),
      Code.FailedPrecondition,
    );
    expect(fieldAtFault(error)).toBe("messages[0].sent_at");
  });
});

let lastToken = "";

/** The changes a stream replays after `resumeToken` (without one: none), as [case, message id]. */
async function replay(request: {
  conversationIds?: string[];
  senderId?: string;
  resumeToken?: string;
}): Promise<[string, string][]> {
  const abort = new AbortController();
  const seen: [string, string][] = [];
  try {
    for await (const response of clients().receipts.watchReceipts(request, {
      ...service,
      signal: abort.signal,
    })) {
      const { update } = response;
      lastToken = response.resumeToken;
      if (update.case === "heartbeat") break; // replay done
      if (update.case === "receipt") seen.push(["receipt", update.value.receipt?.messageId ?? ""]);
      if (update.case === "messageDeleted") {
        for (const id of update.value.messageIds) seen.push(["messageDeleted", id]);
      }
    }
  } finally {
    abort.abort();
  }
  return seen;
}

async function until(condition: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
