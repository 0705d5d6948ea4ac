import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type CallOptions, type Client, Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import { PrivacyService, ReceiptPolicy, ReceiptVisibility } from "../gen/receipts/v1/privacy_pb.js";
import {
  ConversationType,
  type MessageReceipt,
  ReadFilter,
  ReadReceiptService,
  type WatchReceiptsResponse,
} from "../gen/receipts/v1/receipts_pb.js";
import { parseTenants, TenantConfigError } from "../src/auth/tenant-config.js";
import { bearer, expectCode, mintToken, newApiKey, secretBytes } from "./support/auth-fixtures.js";
import { fieldAtFault } from "./support/error-details.js";
import { minutes } from "./support/fixtures.js";
import { type InMemoryApi, openInMemoryApi } from "./support/in-memory-api.js";

/**
 * PrivacyService and private reads through the routes, the access policy and the domain, with
 * API keys and user tokens: who may set what, what each caller sees, what errors name.
 */

const secret = "s".repeat(40);
const tenants = {
  choice: { id: "choice", key: newApiKey(), receipts: { reciprocalC2c: true } },
  work: { id: "work", key: newApiKey(), receipts: { group: "always", c2c: "never" } },
};

let api: InMemoryApi;
beforeAll(async () => {
  api = await openInMemoryApi(
    JSON.stringify({
      tenants: Object.values(tenants).map((t) => ({
        id: t.id,
        apiKeys: [t.key],
        userTokens: { keys: [{ alg: "HS256", secret }] },
        receipts: t.receipts,
      })),
    }),
  );
});
afterAll(async () => {
  await api?.close();
});

interface Caller {
  readonly receipts: Client<typeof ReadReceiptService>;
  readonly privacy: Client<typeof PrivacyService>;
  readonly call: CallOptions;
}

const service = (tenant: { id: string; key: string }): Caller => ({
  receipts: createClient(ReadReceiptService, api.transport),
  privacy: createClient(PrivacyService, api.transport),
  call: bearer(tenant.key),
});

async function user(tenant: { id: string }, userId: string): Promise<Caller> {
  const token = await mintToken({ tenant: tenant.id, sub: userId, key: secretBytes(secret) });
  return { ...service({ id: tenant.id, key: "" }), call: bearer(token) };
}

let conversations = 0;
/** A fresh group (alice sends g1, g2 to bob, carol, dave) and C2C (alice to bob: c1) of the tenant. */
async function seed(tenant: { id: string; key: string }) {
  conversations += 1;
  const group = `g${conversations}`;
  const c2c = `c${conversations}`;
  const { receipts, call } = service(tenant);
  await createClient(MembershipService, api.transport).addMembers(
    {
      groupId: group,
      userIds: ["alice", "bob", "carol", "dave"],
      joinedAt: timestampFromMs(minutes(0)),
    },
    call,
  );
  await receipts.trackMessages(
    {
      messages: [
        ...[1, 2].map((i) => ({
          conversationId: group,
          conversationType: ConversationType.GROUP,
          messageId: `${group}-m${i}`,
          senderId: "alice",
          sentAt: timestampFromMs(minutes(i)),
        })),
        {
          conversationId: c2c,
          conversationType: ConversationType.C2C,
          messageId: `${c2c}-m1`,
          senderId: "alice",
          receiverId: "bob",
          sentAt: timestampFromMs(minutes(3)),
        },
      ],
    },
    call,
  );
  return { group, c2c, g1: `${group}-m1`, c1: `${c2c}-m1` };
}

const counts = (r: MessageReceipt | undefined) => [r?.readCount, r?.unreadCount];

async function receiptAs(caller: Caller, conversationId: string, messageId: string, viewerId = "") {
  const answer = await caller.receipts.getReceipts(
    { conversationId, messageIds: [messageId], viewerId },
    caller.call,
  );
  return answer.receipts[0];
}

/** Opens a stream, waits for its first heartbeat, and collects the receipt updates that follow. */
async function follow(
  caller: Caller,
  request: { senderId?: string; readerId?: string; conversationIds?: string[] },
) {
  const abort = new AbortController();
  const updates: WatchReceiptsResponse[] = [];
  let opened: () => void = () => {};
  const open = new Promise<void>((resolve) => {
    opened = resolve;
  });
  const done = (async () => {
    try {
      for await (const message of caller.receipts.watchReceipts(request, {
        ...caller.call,
        signal: abort.signal,
      })) {
        if (message.update.case === "heartbeat") opened();
        else updates.push(message);
      }
    } catch {
      // Cancelled at the end of the test.
    }
  })();
  await open;
  return {
    updates,
    async until(count: number) {
      for (let waited = 0; updates.length < count && waited < 5_000; waited += 10) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return updates;
    },
    async stop() {
      abort.abort();
      await done;
    },
  };
}

describe("PrivacyService authorization and validation", () => {
  it("a user sets and reads only its own setting; the service caller any user's", async () => {
    const bob = await user(tenants.choice, "bob");
    const set = await bob.privacy.setReceiptSettings(
      { defaultVisibility: ReceiptVisibility.PRIVATE },
      bob.call,
    );
    expect(set.settings).toMatchObject({
      userId: "bob",
      defaultVisibility: ReceiptVisibility.PRIVATE,
      effectiveDefaultVisibility: ReceiptVisibility.PRIVATE,
      c2cPolicy: ReceiptPolicy.USER_CHOICE,
    });
    // One call at a time: a refusal that came back while another was awaited would go unhandled.
    for (const call of [
      () =>
        bob.privacy.setReceiptSettings(
          { userId: "carol", defaultVisibility: ReceiptVisibility.PRIVATE },
          bob.call,
        ),
      () => bob.privacy.getReceiptSettings({ userId: "carol" }, bob.call),
    ]) {
      const refused = await expectCode(call(), Code.PermissionDenied);
      expect(fieldAtFault(refused)).toBe("user_id");
    }
    const admin = service(tenants.choice);
    expect(
      (await admin.privacy.getReceiptSettings({ userId: "carol" }, admin.call)).settings,
    ).toMatchObject({ defaultVisibility: ReceiptVisibility.INHERIT });
    await admin.privacy.setReceiptSettings(
      {
        userId: "carol",
        conversations: [{ conversationId: "x", visibility: ReceiptVisibility.PRIVATE }],
      },
      admin.call,
    );
    const got = await bob.privacy.getReceiptSettings({}, bob.call);
    expect(got.settings?.defaultVisibility).toBe(ReceiptVisibility.PRIVATE);
    const carols = await admin.privacy.getReceiptSettings({ userId: "carol" }, admin.call);
    expect(carols.settings?.conversations).toMatchObject([
      { conversationId: "x", visibility: ReceiptVisibility.PRIVATE },
    ]);
    const work = await admin.privacy.getReceiptSettings(
      { userId: "carol" },
      service(tenants.work).call,
    );
    expect(work.settings).toMatchObject({
      conversations: [],
      c2cPolicy: ReceiptPolicy.NEVER,
      groupPolicy: ReceiptPolicy.ALWAYS,
    });
  });

  it("bad input fails with INVALID_ARGUMENT naming the field, and changes nothing", async () => {
    const admin = service(tenants.choice);
    const cases: [Parameters<typeof admin.privacy.setReceiptSettings>[0], string][] = [
      [{ userId: "", defaultVisibility: ReceiptVisibility.PRIVATE }, "user_id"],
      [
        {
          userId: "erin",
          defaultVisibility: ReceiptVisibility.PRIVATE,
          conversations: [{ conversationId: "a" }],
        },
        "conversations[0].visibility",
      ],
      [
        {
          userId: "erin",
          conversations: [
            { conversationId: "a", visibility: ReceiptVisibility.PRIVATE },
            { conversationId: "a", visibility: ReceiptVisibility.SHARED },
          ],
        },
        "conversations[1].conversation_id",
      ],
      [
        {
          userId: "erin",
          conversations: [{ conversationId: "", visibility: ReceiptVisibility.PRIVATE }],
        },
        "conversations[0].conversation_id",
      ],
      [
        {
          userId: "erin",
          conversations: Array.from({ length: 101 }, (_, i) => ({
            conversationId: `c${i}`,
            visibility: ReceiptVisibility.PRIVATE,
          })),
        },
        "conversations",
      ],
    ];
    for (const [request, field] of cases) {
      const refused = await expectCode(
        admin.privacy.setReceiptSettings(request, admin.call),
        Code.InvalidArgument,
      );
      expect(fieldAtFault(refused), refused.rawMessage).toBe(field);
    }
    const erin = await admin.privacy.getReceiptSettings({ userId: "erin" }, admin.call);
    expect(erin.settings).toMatchObject({
      defaultVisibility: ReceiptVisibility.INHERIT,
      conversations: [],
    });
  });

  it("names the bad value of the tenants file's receipts policy", () => {
    const parse = (receipts: unknown) => () =>
      parseTenants(
        JSON.stringify({ tenants: [{ id: "a", apiKeys: [newApiKey()], receipts }] }),
        "RECEIPTS_TENANTS",
      );
    for (const [receipts, path] of [
      [{ group: "sometimes" }, "tenants[0].receipts.group"],
      [{ defaultVisibility: "hidden" }, "tenants[0].receipts.defaultVisibility"],
      [{ reciprocalC2c: "yes" }, "tenants[0].receipts.reciprocalC2c"],
    ] as const) {
      expect(parse(receipts)).toThrow(TenantConfigError);
      expect(parse(receipts)).toThrow(`RECEIPTS_TENANTS: ${path}: `);
    }
    expect(parse({ group: "sometimes" })).toThrow('"user-choice", "always" or "never"');
    const [parsed] = parse({ c2c: false, group: "always", defaultVisibility: "private" })();
    expect(parsed?.settings).toMatchObject({
      receipts: { c2c: false, group: true },
      privacy: {
        policy: { c2c: "user-choice", group: "always" },
        defaultVisibility: "private",
        reciprocalC2c: false,
      },
    });
  });
});

describe("private reads through the API", () => {
  it("a private reader is unread for the sender and read in its own view and stream", async () => {
    const { group, g1 } = await seed(tenants.choice);
    const alice = await user(tenants.choice, "alice");
    const bob = await user(tenants.choice, "bob");
    const carol = await user(tenants.choice, "carol");
    await bob.privacy.setReceiptSettings(
      { conversations: [{ conversationId: group, visibility: ReceiptVisibility.PRIVATE }] },
      bob.call,
    );
    const sendersStream = await follow(alice, { senderId: "alice" });
    const bobsStream = await follow(bob, { readerId: "bob" });
    const sent = await bob.receipts.sendReceipts(
      { conversationId: group, messageIds: [g1] },
      bob.call,
    );
    expect(counts(sent.receipts[0])).toEqual([1, 2]);
    await carol.receipts.sendReceipts({ conversationId: group, messageIds: [g1] }, carol.call);

    // Every view: read + unread = the audience (3).
    expect(counts(await receiptAs(alice, group, g1))).toEqual([1, 2]);
    expect(counts(await receiptAs(bob, group, g1))).toEqual([2, 1]);
    const admin = service(tenants.choice);
    expect(counts(await receiptAs(admin, group, g1))).toEqual([1, 2]);
    expect(counts(await receiptAs(admin, group, g1, "bob"))).toEqual([2, 1]);
    const unread = await alice.receipts.listReadMembers(
      { conversationId: group, messageId: g1, filter: ReadFilter.UNREAD },
      alice.call,
    );
    expect(unread.members.map((m) => m.userId)).toEqual(["bob", "dave"]);
    const batch = await alice.receipts.batchGetReadMembers(
      { conversationId: group, messageIds: [g1] },
      alice.call,
    );
    expect(batch.messageReadMembers[0]?.readMembers.map((m) => m.userId)).toEqual(["carol"]);
    expect(batch.messageReadMembers[0]?.unreadMembers.map((m) => m.userId)).toEqual([
      "bob",
      "dave",
    ]);

    const own = await bobsStream.until(1);
    expect(own[0]?.update).toMatchObject({ case: "receipt", value: { readerId: "bob" } });
    expect(own[0]?.update.case === "receipt" && counts(own[0].update.value.receipt)).toEqual([
      1, 2,
    ]);
    const senders = await sendersStream.until(1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(senders.map((u) => u.update.case === "receipt" && u.update.value.readerId)).toEqual([
      "carol",
    ]);
    await Promise.all([sendersStream.stop(), bobsStream.stop()]);
  });

  it("a user may follow and view only its own reads", async () => {
    const { group, g1 } = await seed(tenants.choice);
    const bob = await user(tenants.choice, "bob");
    const watched = await expectCode(
      (async () => {
        for await (const _ of bob.receipts.watchReceipts({ readerId: "carol" }, bob.call)) break;
      })(),
      Code.PermissionDenied,
    );
    expect(fieldAtFault(watched)).toBe("reader_id");
    const viewed = await expectCode(
      bob.receipts.getReceipts(
        { conversationId: group, messageIds: [g1], viewerId: "carol" },
        bob.call,
      ),
      Code.PermissionDenied,
    );
    expect(fieldAtFault(viewed)).toBe("viewer_id");
  });

  it("'always' shows a private user's group reads; 'never' hides every C2C read", async () => {
    const { group, c2c, g1, c1 } = await seed(tenants.work);
    const alice = await user(tenants.work, "alice");
    const bob = await user(tenants.work, "bob");
    await bob.privacy.setReceiptSettings(
      { defaultVisibility: ReceiptVisibility.PRIVATE },
      bob.call,
    );
    await bob.receipts.sendReceipts({ conversationId: group, messageIds: [g1] }, bob.call);
    expect(counts(await receiptAs(alice, group, g1))).toEqual([1, 2]);
    const alices = await alice.privacy.setReceiptSettings(
      { defaultVisibility: ReceiptVisibility.SHARED },
      alice.call,
    );
    expect(alices.settings?.c2cPolicy).toBe(ReceiptPolicy.NEVER);
    await bob.receipts.sendReceipts({ conversationId: c2c, messageIds: [c1] }, bob.call);
    expect(await receiptAs(alice, c2c, c1)).toMatchObject({ receiverRead: false, unreadCount: 1 });
    expect(await receiptAs(bob, c2c, c1)).toMatchObject({ receiverRead: true, readCount: 1 });
  });

  it("reciprocity: a user hiding its C2C reads does not see receiver_read of others", async () => {
    const { c2c, c1 } = await seed(tenants.choice);
    const alice = await user(tenants.choice, "alice");
    const bob = await user(tenants.choice, "bob");
    await bob.privacy.setReceiptSettings({ defaultVisibility: ReceiptVisibility.SHARED }, bob.call);
    await bob.receipts.sendReceipts({ conversationId: c2c, messageIds: [c1] }, bob.call);
    const shown = await receiptAs(alice, c2c, c1);
    expect(shown).toMatchObject({ receiverRead: true, readCount: 1, unreadCount: 0 });
    expect(shown?.receiverReadAt).toBeDefined();
    await alice.privacy.setReceiptSettings(
      { conversations: [{ conversationId: c2c, visibility: ReceiptVisibility.PRIVATE }] },
      alice.call,
    );
    const withheld = await receiptAs(alice, c2c, c1);
    expect(withheld).toMatchObject({ receiverRead: false, readCount: 0, unreadCount: 1 });
    expect(withheld?.receiverReadAt).toBeUndefined();
    // Her listings agree: bob is listed unread, in ListReadMembers and BatchGetReadMembers.
    const list = (filter: ReadFilter) =>
      alice.receipts.listReadMembers({ conversationId: c2c, messageId: c1, filter }, alice.call);
    expect((await list(ReadFilter.READ)).members).toEqual([]);
    expect((await list(ReadFilter.UNREAD)).members.map((m) => m.userId)).toEqual(["bob"]);
    const [batch] = (
      await alice.receipts.batchGetReadMembers(
        { conversationId: c2c, messageIds: [c1] },
        alice.call,
      )
    ).messageReadMembers;
    expect(batch?.receipt).toMatchObject({ receiverRead: false, unreadCount: 1 });
    expect(batch?.readMembers).toEqual([]);
    expect(batch?.unreadMembers.map((m) => m.userId)).toEqual(["bob"]);
    const byService = await service(tenants.choice).receipts.listReadMembers(
      { conversationId: c2c, messageId: c1, filter: ReadFilter.READ },
      service(tenants.choice).call,
    );
    expect(byService.members.map((m) => m.userId)).toEqual(["bob"]);
    // The tenant's backend, without a viewer, sees the shared view.
    expect(await receiptAs(service(tenants.choice), c2c, c1)).toMatchObject({ receiverRead: true });
  });

  it("reciprocity on streams: a user hiding its C2C reads is not sent the other's reads", async () => {
    const { c2c } = await seed(tenants.choice);
    const alice = await user(tenants.choice, "alice");
    const bob = await user(tenants.choice, "bob");
    await bob.privacy.setReceiptSettings({ defaultVisibility: ReceiptVisibility.SHARED }, bob.call);
    await alice.privacy.setReceiptSettings(
      { conversations: [{ conversationId: c2c, visibility: ReceiptVisibility.PRIVATE }] },
      alice.call,
    );
    const admin = service(tenants.choice);
    await admin.receipts.trackMessages(
      {
        messages: ["c-a", "c-b"].map((messageId, i) => ({
          conversationId: c2c,
          conversationType: ConversationType.C2C,
          messageId: `${c2c}-${messageId}`,
          senderId: i === 0 ? "alice" : "bob",
          receiverId: i === 0 ? "bob" : "alice",
          sentAt: timestampFromMs(minutes(5 + i)),
        })),
      },
      admin.call,
    );
    const alices = await follow(alice, { conversationIds: [c2c] });
    const services = await follow(admin, { conversationIds: [c2c] });
    await bob.receipts.sendReceipts({ conversationId: c2c, messageIds: [`${c2c}-c-a`] }, bob.call);
    await alice.receipts.sendReceipts(
      { conversationId: c2c, messageIds: [`${c2c}-c-b`] },
      alice.call,
    );
    await services.until(1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // alice sees her own (private) read of bob's message only when following her reads; bob's
    // read of hers is withheld from her; the backend sees bob's shown read.
    expect(alices.updates).toEqual([]);
    expect(
      services.updates.map((u) => u.update.case === "receipt" && u.update.value.readerId),
    ).toEqual(["bob"]);
    await Promise.all([alices.stop(), services.stop()]);
  });
});
