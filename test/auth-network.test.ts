import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type CallOptions, Code, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { exportSPKI, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
  firstMessage,
  mintToken,
  newApiKey,
  secretBytes,
  uniqueTenant,
} from "./support/auth-fixtures.js";
import { minutes } from "./support/fixtures.js";
import { createGrpcJsClient, unary } from "./support/grpc-js-client.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/**
 * Authentication and authorization of every RPC over the network, through gRPC and Connect.
 * Tenant A uses HS256 user tokens, tenant B ES256; both hold the same ids (isolation).
 */
const a = { id: uniqueTenant("acme"), key: newApiKey(), secret: newApiKey() };
const b = { id: uniqueTenant("globex"), key: newApiKey() };
let bKeys: Awaited<ReturnType<typeof generateKeyPair>>;
let server: TestServer;

const generous = {
  tenantRequestsPerSecond: 100_000,
  tenantBurst: 100_000,
  userRequestsPerSecond: 100_000,
  userBurst: 100_000,
};

beforeAll(async () => {
  bKeys = await generateKeyPair("ES256", { extractable: true });
  server = await startTestServer({
    RECEIPTS_TENANTS: JSON.stringify({
      tenants: [
        {
          id: a.id,
          apiKeys: [a.key],
          userTokens: { keys: [{ alg: "HS256", secret: a.secret }] },
          limits: generous,
        },
        {
          id: b.id,
          apiKeys: [b.key],
          userTokens: {
            keys: [{ alg: "ES256", publicKey: await exportSPKI(bKeys.publicKey) }],
          },
          limits: generous,
        },
      ],
    }),
  });
  // The same ids in both tenants, with different members and reads.
  for (const [tenant, members, reader] of [
    [a, ["s", "alice", "bob", "dave"], "bob"],
    [b, ["s", "erin", "frank"], "erin"],
  ] as const) {
    const transport = createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" });
    const service = bearer(tenant.key);
    const receipts = createClient(ReadReceiptService, transport);
    await createClient(MembershipService, transport).addMembers(
      { groupId: "g", userIds: [...members], joinedAt: timestampFromMs(minutes(0)) },
      service,
    );
    await receipts.trackMessages(
      {
        messages: [
          groupMessage("m1", "s", 1),
          {
            conversationId: "d",
            conversationType: ConversationType.C2C,
            messageId: "m2",
            senderId: "s",
            receiverId: "alice",
            sentAt: timestampFromMs(minutes(2)),
          },
        ],
      },
      service,
    );
    await receipts.sendReceipts(
      { conversationId: "g", readerId: reader, messageIds: ["m1"] },
      service,
    );
  }
});
afterAll(async () => {
  await server?.stop();
});

function groupMessage(messageId: string, senderId: string, minute: number) {
  return {
    conversationId: "g",
    conversationType: ConversationType.GROUP,
    messageId,
    senderId,
    sentAt: timestampFromMs(minutes(minute)),
  };
}

const userToken = (sub: string, extra: { expiresIn?: number; issuedAt?: number } = {}) =>
  mintToken({ tenant: a.id, sub, key: secretBytes(a.secret), ...extra });

const transports: Record<string, () => Transport> = {
  "gRPC (connect-node)": () => createGrpcTransport({ baseUrl: server.baseUrl }),
  "Connect JSON over HTTP/1.1": () =>
    createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
};

type Clients = {
  receipts: ReturnType<typeof createClient<typeof ReadReceiptService>>;
  members: ReturnType<typeof createClient<typeof MembershipService>>;
};

type Call = (c: Clients, options: CallOptions) => Promise<unknown>;

/** Every RPC, as a caller with full rights would call it (the write ones change state). */
const rpcs = {
  TrackMessages: (c, o) =>
    c.receipts.trackMessages({ messages: [groupMessage("m-new", "s", 3)] }, o),
  SendReceipts: (c, o) =>
    c.receipts.sendReceipts({ conversationId: "g", readerId: "alice", messageIds: ["m1"] }, o),
  GetReceipts: (c, o) => c.receipts.getReceipts({ conversationId: "g", messageIds: ["m1"] }, o),
  ListReadMembers: (c, o) =>
    c.receipts.listReadMembers(
      { conversationId: "g", messageId: "m1", filter: ReadFilter.READ },
      o,
    ),
  BatchGetReadMembers: (c, o) =>
    c.receipts.batchGetReadMembers({ conversationId: "g", messageIds: ["m1"] }, o),
  WatchReceipts: (c, o) =>
    firstMessage((signal) =>
      c.receipts.watchReceipts({ conversationIds: ["g"] }, { ...o, signal }),
    ),
  MarkConversationRead: (c, o) =>
    c.receipts.markConversationRead({ conversationId: "g", readerId: "alice" }, o),
  AddMembers: (c, o) => c.members.addMembers({ groupId: "g", userIds: ["zed"] }, o),
  RemoveMembers: (c, o) => c.members.removeMembers({ groupId: "g", userIds: ["bob"] }, o),
  ListMembers: (c, o) => c.members.listMembers({ groupId: "g" }, o),
} satisfies Record<string, Call>;

/** A user going beyond their rights, one way per RPC: [token's user, call]. */
const beyondRights: Record<keyof typeof rpcs, [string, Call]> = {
  TrackMessages: ["s", rpcs.TrackMessages],
  SendReceipts: [
    "alice",
    (c, o) =>
      c.receipts.sendReceipts({ conversationId: "g", readerId: "dave", messageIds: ["m1"] }, o),
  ],
  GetReceipts: [
    "carol",
    (c, o) => c.receipts.getReceipts({ conversationId: "g", messageIds: ["m1"] }, o),
  ],
  ListReadMembers: [
    "alice",
    (c, o) =>
      c.receipts.listReadMembers(
        { conversationId: "g", messageId: "m1", filter: ReadFilter.UNREAD },
        o,
      ),
  ],
  BatchGetReadMembers: ["alice", rpcs.BatchGetReadMembers],
  WatchReceipts: [
    "alice",
    (c, o) =>
      firstMessage((signal) => c.receipts.watchReceipts({ senderId: "s" }, { ...o, signal })),
  ],
  MarkConversationRead: [
    "alice",
    (c, o) => c.receipts.markConversationRead({ conversationId: "g", readerId: "dave" }, o),
  ],
  AddMembers: ["alice", rpcs.AddMembers],
  RemoveMembers: ["alice", rpcs.RemoveMembers],
  ListMembers: ["alice", rpcs.ListMembers],
};

/** Everything the refused calls would have changed, read with the service key. */
async function snapshot(c: Clients, key: string): Promise<unknown> {
  const service = bearer(key);
  const missing = await c.receipts
    .getReceipts({ conversationId: "g", messageIds: ["m-new"] }, service)
    .then(
      () => "tracked",
      () => "absent",
    );
  return {
    missing,
    counts: (
      await c.receipts.getReceipts({ conversationId: "g", messageIds: ["m1"] }, service)
    ).receipts.map((r) => [r.readCount, r.unreadCount]),
    readers: (
      await c.receipts.listReadMembers(
        { conversationId: "g", messageId: "m1", filter: ReadFilter.READ },
        service,
      )
    ).members.map((m) => m.userId),
    members: (await c.members.listMembers({ groupId: "g" }, service)).members.map((m) => m.userId),
  };
}

describe.each(Object.entries(transports))("through %s", (_name, makeTransport) => {
  let c: Clients;
  beforeAll(() => {
    const transport = makeTransport();
    c = {
      receipts: createClient(ReadReceiptService, transport),
      members: createClient(MembershipService, transport),
    };
  });

  it("refuses every RPC without valid credentials with UNAUTHENTICATED, changing nothing", async () => {
    const before = await snapshot(c, a.key);
    const forged = await mintToken({
      tenant: a.id,
      sub: "alice",
      key: bKeys.privateKey,
      alg: "ES256",
    });
    const credentials: Record<string, CallOptions> = {
      "no credentials": {},
      "a wrong API key": bearer(newApiKey()),
      "an expired token": bearer(await userToken("alice", { expiresIn: -120, issuedAt: -400 })),
      "a token signed by another tenant": bearer(forged),
      "not a bearer credential": { headers: { authorization: `Basic ${a.key}` } },
    };
    for (const [rpc, call] of Object.entries(rpcs)) {
      for (const [what, options] of Object.entries(credentials)) {
        const error = await expectCode(call(c, options), Code.Unauthenticated);
        expect(error.rawMessage, `${rpc} with ${what}`).not.toContain(a.id);
      }
    }
    expect(await snapshot(c, a.key)).toEqual(before);
  });

  it("answers a wrong key and an unknown tenant the same way", async () => {
    const unknownTenant = await mintToken({ tenant: "nope", sub: "x", key: secretBytes(a.secret) });
    const wrongSignature = await mintToken({
      tenant: a.id,
      sub: "x",
      key: secretBytes(newApiKey()),
    });
    const messages = await Promise.all(
      [unknownTenant, wrongSignature, newApiKey()].map(
        async (credential) =>
          (await expectCode(rpcs.GetReceipts(c, bearer(credential)), Code.Unauthenticated))
            .rawMessage,
      ),
    );
    expect(new Set(messages).size).toBe(1);
  });

  it("refuses a user acting beyond their rights with PERMISSION_DENIED, changing nothing", async () => {
    const before = await snapshot(c, a.key);
    for (const [rpc, [user, call]] of Object.entries(beyondRights)) {
      const error = await expectCode(call(c, bearer(await userToken(user))), Code.PermissionDenied);
      expect(error.rawMessage, rpc).not.toMatch(/not tracked|unknown|does not exist/);
    }
    expect(await snapshot(c, a.key)).toEqual(before);
  });

  it("lets users act as themselves within their conversations", async () => {
    const alice = bearer(await userToken("alice"));
    const got = await c.receipts.getReceipts({ conversationId: "g", messageIds: ["m1"] }, alice);
    expect(got.receipts[0]?.messageId).toBe("m1");
    const opened = await firstMessage((signal) =>
      c.receipts.watchReceipts({ conversationIds: ["g", "d"] }, { ...alice, signal }),
    );
    expect(opened.update.case).toBe("heartbeat");
    const own = await firstMessage((signal) =>
      c.receipts.watchReceipts({ senderId: "alice" }, { ...alice, signal }),
    );
    expect(own.update.case).toBe("heartbeat");
    // The sender lists who read; a non-member may still read the receipts of their own message.
    const s = bearer(await userToken("s"));
    const readers = await c.receipts.listReadMembers(
      { conversationId: "g", messageId: "m1", filter: ReadFilter.READ },
      s,
    );
    expect(readers.members.map((m) => m.userId)).toContain("bob");
    const batch = await c.receipts.batchGetReadMembers(
      { conversationId: "g", messageIds: ["m1"] },
      s,
    );
    expect(batch.messageReadMembers[0]?.readMembers.map((m) => m.userId)).toEqual(
      readers.members.map((m) => m.userId),
    );
    // An empty reader_id means the token's user.
    await c.receipts.markConversationRead({ conversationId: "d", readerId: "" }, alice);
    const c2c = await c.receipts.getReceipts({ conversationId: "d", messageIds: ["m2"] }, alice);
    expect(c2c.receipts[0]?.receiverRead).toBe(true);
    const dave = bearer(await userToken("dave"));
    const sent = await c.receipts.sendReceipts({ conversationId: "g", messageIds: ["m1"] }, dave);
    expect(sent.receipts[0]?.readCount).toBeGreaterThanOrEqual(2);
    const readersAfter = await c.receipts.listReadMembers(
      { conversationId: "g", messageId: "m1", filter: ReadFilter.READ },
      s,
    );
    expect(readersAfter.members.map((m) => m.userId)).toContain("dave");
  });

  it("never tells a user outside a conversation whether a message exists", async () => {
    const carol = bearer(await userToken("carol"));
    const existing = await expectCode(
      c.receipts.getReceipts({ conversationId: "g", messageIds: ["m1"] }, carol),
      Code.PermissionDenied,
    );
    const missing = await expectCode(
      c.receipts.getReceipts({ conversationId: "g", messageIds: ["no-such"] }, carol),
      Code.PermissionDenied,
    );
    const noConversation = await expectCode(
      c.receipts.getReceipts({ conversationId: "no-such", messageIds: ["m1"] }, carol),
      Code.PermissionDenied,
    );
    expect(missing.rawMessage).toBe(existing.rawMessage);
    expect(noConversation.rawMessage).toBe(existing.rawMessage);
    // A member asking about a message of a conversation they are not in gets NOT_FOUND, never
    // "belongs to another conversation".
    const bob = bearer(await userToken("bob"));
    const foreign = await expectCode(
      c.receipts.getReceipts({ conversationId: "g", messageIds: ["m2"] }, bob),
      Code.NotFound,
    );
    expect(foreign.rawMessage).not.toContain("another conversation");
    // No tenant-wide watch for users.
    await expectCode(
      firstMessage((signal) => c.receipts.watchReceipts({}, { ...bob, signal })),
      Code.PermissionDenied,
    );
  });

  it("serves every RPC to the service key", async () => {
    const service = bearer(a.key);
    for (const [rpc, call] of Object.entries(rpcs)) {
      await expect(call(c, service), rpc).resolves.toBeDefined();
    }
    expect(await snapshot(c, a.key)).toMatchObject({
      missing: "tracked",
      readers: expect.arrayContaining(["alice", "bob"]),
    });
    // RemoveMembers took bob out: put him back so that the next transport starts alike.
    await c.members.addMembers({ groupId: "g", userIds: ["bob"] }, service);
  });
});

describe("tenant isolation with colliding ids", () => {
  it("keeps conversations, messages, members and streams of two tenants apart", async () => {
    const transport = createGrpcTransport({ baseUrl: server.baseUrl });
    const receipts = createClient(ReadReceiptService, transport);
    const members = createClient(MembershipService, transport);
    const inA = bearer(a.key);
    const inB = bearer(b.key);
    const membersOf = async (key: { headers: Record<string, string> }) =>
      (await members.listMembers({ groupId: "g" }, key)).members.map((m) => m.userId);
    expect(await membersOf(inA)).toContain("alice");
    expect(await membersOf(inA)).not.toContain("erin");
    expect(await membersOf(inB)).toContain("erin");
    expect(await membersOf(inB)).not.toContain("alice");

    // A user of B named like a member of A is not a member in B.
    const bAlice = bearer(
      await mintToken({ tenant: b.id, sub: "alice", key: bKeys.privateKey, alg: "ES256" }),
    );
    await expectCode(
      receipts.getReceipts({ conversationId: "g", messageIds: ["m1"] }, bAlice),
      Code.PermissionDenied,
    );
    const bErin = bearer(
      await mintToken({ tenant: b.id, sub: "erin", key: bKeys.privateKey, alg: "ES256" }),
    );
    const readersInB = await receipts.listReadMembers(
      { conversationId: "g", messageId: "m1", filter: ReadFilter.READ },
      inB,
    );
    expect(readersInB.members.map((m) => m.userId)).toContain("erin");
    expect(readersInB.members.map((m) => m.userId)).not.toContain("bob");

    // A's stream never carries B's receipts for the same message id.
    const abort = new AbortController();
    const stream = receipts
      .watchReceipts({ conversationIds: ["g"] }, { ...inA, signal: abort.signal })
      [Symbol.asyncIterator]();
    try {
      expect((await stream.next()).value?.update.case).toBe("heartbeat");
      await receipts.sendReceipts(
        { conversationId: "g", readerId: "frank", messageIds: ["m1"] },
        inB,
      );
      await receipts.sendReceipts({ conversationId: "g", messageIds: ["m1"] }, bErin);
      const countsInA = await receipts.getReceipts(
        { conversationId: "g", messageIds: ["m1"] },
        inA,
      );
      await receipts.markConversationRead({ conversationId: "g", readerId: "s" }, inA);
      let update: WatchReceiptsResponse | undefined;
      for (let i = 0; i < 5 && update === undefined; i++) {
        const next = await stream.next();
        if (next.value?.update.case !== "heartbeat") update = next.value;
      }
      // The first update is A's own horizon: none of B's receipts came through.
      expect(update?.update.case).toBe("readHorizon");
      expect(update?.update.value).toMatchObject({ readerId: "s" });
      // B's reads did not count in A.
      const after = await receipts.getReceipts({ conversationId: "g", messageIds: ["m1"] }, inA);
      expect(after.receipts[0]?.readCount).toBe(countsInA.receipts[0]?.readCount);
    } finally {
      abort.abort();
    }
  });
});

describe("a stock @grpc/grpc-js client", () => {
  let client: grpc.Client;
  beforeAll(() => {
    client = createGrpcJsClient(ReadReceiptService, server.address);
  });
  afterAll(() => client?.close());

  it("gets UNAUTHENTICATED without metadata and is served with the key or a user token", async () => {
    const request = { conversationId: "g", messageIds: ["m1"] };
    const refused = await unary(client, "getReceipts", request).catch(
      (error: grpc.ServiceError) => error,
    );
    expect((refused as grpc.ServiceError).code).toBe(grpc.status.UNAUTHENTICATED);
    const withKey = new grpc.Metadata();
    withKey.set("authorization", `Bearer ${a.key}`);
    const got = await unary<{ receipts: unknown[] }>(client, "getReceipts", request, withKey);
    expect(got.receipts).toHaveLength(1);
    const asUser = new grpc.Metadata();
    asUser.set("authorization", `Bearer ${await userToken("carol")}`);
    const denied = await unary(client, "getReceipts", request, asUser).catch(
      (error: grpc.ServiceError) => error,
    );
    expect((denied as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);
  });
});
