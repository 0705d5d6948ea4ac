import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AccessPolicy } from "../src/domain/access-policy.js";
import { type Caller, requireService, serviceCaller } from "../src/domain/caller.js";
import { ReceiptError } from "../src/domain/errors.js";
import type { ConversationType, TrackedMessage } from "../src/domain/model.js";
import type { TenantSettings } from "../src/domain/tenant-settings.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "../src/store/sqlite/sqlite-receipt-store.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";

/**
 * The authorization rules, checked against a plain model of them: random worlds (memberships,
 * messages, tenant settings), random callers and random requests; the policy's answer must be
 * the model's, and a user outside a conversation must get the same answer whether or not what
 * they ask about exists.
 */

const tenant = "t";
const users = ["u0", "u1", "u2", "u3", "u9"] as const;
const groups = ["g0", "g1"] as const;
const pairs = { c0: ["u0", "u1"], c1: ["u2", "u3"] } as const;
const conversations = ["g0", "g1", "c0", "c1", "zz"] as const;
const leftAt = 50;

type Membership = "none" | "current" | "left";

interface World {
  readonly memberships: Record<string, Membership>;
  readonly messages: readonly TrackedMessage[];
  readonly settings: TenantSettings;
}

const membershipKey = (group: string, user: string) => `${group}/${user}`;

const worldArbitrary: fc.Arbitrary<World> = fc
  .record({
    memberships: fc.record(
      Object.fromEntries(
        groups.flatMap((g) =>
          users.map((u) => [
            membershipKey(g, u),
            fc.constantFrom<Membership>("none", "current", "left"),
          ]),
        ),
      ) as Record<string, fc.Arbitrary<Membership>>,
    ),
    messages: fc.array(
      fc.record({
        conversation: fc.constantFrom("g0", "g1", "c0", "c1"),
        sender: fc.constantFrom(...users),
        senderSide: fc.constantFrom(0, 1),
        sentAt: fc.integer({ min: 1, max: 100 }),
      }),
      { maxLength: 6 },
    ),
    settings: fc.record({
      receipts: fc.record({ c2c: fc.boolean(), group: fc.boolean() }),
      maxGroupSizeForMemberLists: fc.integer({ min: 1, max: 6 }),
      readMembersOpenToMembers: fc.boolean(),
    }),
  })
  .map(({ memberships, messages, settings }) => ({
    memberships,
    settings,
    messages: messages.map((m, i): TrackedMessage => {
      if (m.conversation === "c0" || m.conversation === "c1") {
        const pair = pairs[m.conversation];
        return {
          conversationId: m.conversation,
          conversationType: "c2c",
          messageId: `m${i}`,
          senderId: pair[m.senderSide] as string,
          receiverId: pair[1 - m.senderSide] as string,
          sentAt: m.sentAt,
        };
      }
      return {
        conversationId: m.conversation,
        conversationType: "group",
        messageId: `m${i}`,
        senderId: m.sender,
        receiverId: "",
        sentAt: m.sentAt,
      };
    }),
  }));

const callerArbitrary: fc.Arbitrary<Caller> = fc.oneof(
  fc.constant(serviceCaller),
  fc.constantFrom(...users).map((userId): Caller => ({ kind: "user", userId })),
);

const messageIds = fc.array(fc.constantFrom("m0", "m1", "m2", "m3", "m4", "m5", "mx"), {
  minLength: 1,
  maxLength: 3,
});
const conversation = fc.constantFrom(...conversations);

type Request =
  | { rpc: "track"; types: ConversationType[] }
  | { rpc: "send"; conversationId: string; readerId: string; messageIds: string[] }
  | { rpc: "mark"; conversationId: string; readerId: string }
  | { rpc: "get"; conversationId: string; messageIds: string[] }
  | { rpc: "list"; conversationId: string; messageId: string }
  | { rpc: "batch"; conversationId: string; messageIds: string[] }
  | { rpc: "watch"; conversationIds: string[]; senderId: string }
  | { rpc: "membership" };

const reader = fc.constantFrom("", ...users);
const requestArbitrary: fc.Arbitrary<Request> = fc.oneof(
  fc.record({
    rpc: fc.constant("track" as const),
    types: fc.array(fc.constantFrom<ConversationType>("c2c", "group"), {
      minLength: 1,
      maxLength: 3,
    }),
  }),
  fc.record({
    rpc: fc.constant("send" as const),
    conversationId: conversation,
    readerId: reader,
    messageIds,
  }),
  fc.record({ rpc: fc.constant("mark" as const), conversationId: conversation, readerId: reader }),
  fc.record({ rpc: fc.constant("get" as const), conversationId: conversation, messageIds }),
  fc.record({
    rpc: fc.constant("list" as const),
    conversationId: conversation,
    messageId: fc.constantFrom("m0", "m1", "m2", "m3", "mx"),
  }),
  fc.record({ rpc: fc.constant("batch" as const), conversationId: conversation, messageIds }),
  fc.record({
    rpc: fc.constant("watch" as const),
    conversationIds: fc.array(conversation, { maxLength: 3 }),
    senderId: fc.constantFrom("", ...users),
  }),
  fc.record({ rpc: fc.constant("membership" as const) }),
);

type Outcome = "allowed" | "permission_denied" | "not_found" | "failed_precondition";

/** The rules as docs/security.md states them, computed from the world directly. */
function expected(world: World, caller: Caller, request: Request): Outcome {
  const membership = (conversationId: string, user: string): Membership =>
    world.memberships[membershipKey(conversationId, user)] ?? "none";
  const typeOf = (conversationId: string): ConversationType | undefined =>
    world.messages.find((m) => m.conversationId === conversationId)?.conversationType;
  const belongs = (user: string, conversationId: string, when: "now" | "ever"): boolean => {
    if (typeOf(conversationId) === "c2c") {
      return (pairs[conversationId as keyof typeof pairs] as readonly string[]).includes(user);
    }
    const state = membership(conversationId, user);
    return when === "ever" ? state !== "none" : state === "current";
  };
  const messageIn = (conversationId: string, id: string) =>
    world.messages.find((m) => m.messageId === id && m.conversationId === conversationId);
  const receiptsOff = (conversationId: string) => {
    const type = typeOf(conversationId);
    return type !== undefined && !world.settings.receipts[type];
  };
  const user = caller.kind === "user" ? caller.userId : undefined;

  switch (request.rpc) {
    case "membership":
      return user === undefined ? "allowed" : "permission_denied";
    case "track":
      if (user !== undefined) return "permission_denied";
      return request.types.some((t) => !world.settings.receipts[t])
        ? "failed_precondition"
        : "allowed";
    case "send":
    case "mark": {
      if (user !== undefined) {
        if (request.readerId !== "" && request.readerId !== user) return "permission_denied";
        if (!belongs(user, request.conversationId, "ever")) return "permission_denied";
        if (
          request.rpc === "send" &&
          request.messageIds.some((id) => !messageIn(request.conversationId, id))
        ) {
          return "not_found";
        }
      }
      return receiptsOff(request.conversationId) ? "failed_precondition" : "allowed";
    }
    case "get": {
      if (user === undefined) return "allowed";
      if (belongs(user, request.conversationId, "now")) {
        return request.messageIds.every((id) => messageIn(request.conversationId, id))
          ? "allowed"
          : "not_found";
      }
      return request.messageIds.every(
        (id) => messageIn(request.conversationId, id)?.senderId === user,
      )
        ? "allowed"
        : "permission_denied";
    }
    case "list": {
      const message = messageIn(request.conversationId, request.messageId);
      if (user !== undefined && message?.senderId !== user) {
        if (!belongs(user, request.conversationId, "now")) return "permission_denied";
        if (message === undefined) return "not_found";
        if (!world.settings.readMembersOpenToMembers) return "permission_denied";
      }
      if (message?.conversationType !== "group") return "allowed";
      const size = users.filter((u) => {
        const state = membership(message.conversationId, u);
        return state === "current" || (state === "left" && message.sentAt < leftAt);
      }).length;
      return size > world.settings.maxGroupSizeForMemberLists ? "failed_precondition" : "allowed";
    }
    case "batch": {
      // ListReadMembers' rule for every message; the group size is the service's to check.
      if (user === undefined) return "allowed";
      const own = (id: string) => messageIn(request.conversationId, id)?.senderId === user;
      if (request.messageIds.every(own)) return "allowed";
      if (!belongs(user, request.conversationId, "now")) return "permission_denied";
      if (request.messageIds.some((id) => !messageIn(request.conversationId, id))) {
        return "not_found";
      }
      return world.settings.readMembersOpenToMembers ? "allowed" : "permission_denied";
    }
    case "watch": {
      if (user === undefined) return "allowed";
      if (request.senderId !== "")
        return request.senderId === user ? "allowed" : "permission_denied";
      if (request.conversationIds.length === 0) return "permission_denied";
      return request.conversationIds.every((c) => belongs(user, c, "now"))
        ? "allowed"
        : "permission_denied";
    }
  }
}

async function buildPolicy(world: World): Promise<{ policy: AccessPolicy; close: () => void }> {
  const db = openSqliteDatabase(":memory:");
  const store = new SqliteReceiptStore(db, new SqliteWriteBatcher(db));
  for (const group of groups) {
    const joined = users.filter((u) => world.memberships[membershipKey(group, u)] !== "none");
    const left = users.filter((u) => world.memberships[membershipKey(group, u)] === "left");
    if (joined.length > 0) await store.openMemberships(tenant, group, joined, 0);
    if (left.length > 0) await store.closeMemberships(tenant, group, left, leftAt);
  }
  if (world.messages.length > 0) await store.insertMessages(tenant, world.messages);
  return {
    policy: new AccessPolicy({ store, settingsOf: () => world.settings }),
    close: () => void store.close(),
  };
}

async function actual(
  policy: AccessPolicy,
  caller: Caller,
  request: Request,
): Promise<Outcome | string> {
  try {
    switch (request.rpc) {
      case "membership":
        requireService(caller, "MembershipService");
        break;
      case "track":
        await policy.authorizeTrackMessages(
          tenant,
          caller,
          request.types.map((conversationType) => ({ conversationType })),
        );
        break;
      case "send":
        await policy.authorizeSendReceipts(tenant, caller, request);
        break;
      case "mark":
        await policy.authorizeMarkConversationRead(tenant, caller, request);
        break;
      case "get":
        await policy.authorizeGetReceipts(tenant, caller, request);
        break;
      case "list":
        await policy.authorizeListReadMembers(tenant, caller, request);
        break;
      case "batch":
        await policy.authorizeBatchGetReadMembers(tenant, caller, request);
        break;
      case "watch":
        await policy.authorizeWatchReceipts(tenant, caller, request);
        break;
    }
    return "allowed";
  } catch (error) {
    if (error instanceof ReceiptError) return error.kind;
    throw error;
  }
}

describe("the authorization rules (property-based)", () => {
  it("answer every caller and request as the rules say", async () => {
    await fc.assert(
      fc.asyncProperty(
        worldArbitrary,
        fc.array(fc.tuple(callerArbitrary, requestArbitrary), { minLength: 1, maxLength: 15 }),
        async (world, calls) => {
          const { policy, close } = await buildPolicy(world);
          try {
            for (const [caller, request] of calls) {
              expect(
                await actual(policy, caller, request),
                JSON.stringify({ caller, request }),
              ).toBe(expected(world, caller, request));
            }
          } finally {
            close();
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it("let users act only as themselves: a reader_id of someone else is always refused", async () => {
    await fc.assert(
      fc.asyncProperty(
        worldArbitrary,
        fc.constantFrom(...users),
        fc.constantFrom(...users),
        conversation,
        async (world, user, other, conversationId) => {
          fc.pre(user !== other);
          const { policy, close } = await buildPolicy(world);
          try {
            const caller: Caller = { kind: "user", userId: user };
            for (const call of [
              policy.authorizeSendReceipts(tenant, caller, {
                conversationId,
                readerId: other,
                messageIds: ["m0"],
              }),
              policy.authorizeMarkConversationRead(tenant, caller, {
                conversationId,
                readerId: other,
              }),
            ]) {
              const error = await call.catch((e: unknown) => e);
              expect(error).toBeInstanceOf(ReceiptError);
              expect((error as ReceiptError).kind).toBe("permission_denied");
              expect((error as ReceiptError).field).toBe("reader_id");
            }
          } finally {
            close();
          }
        },
      ),
      { numRuns: 50 },
    );
  });

  it("never tell a user outside a conversation whether a message or the conversation exists", async () => {
    await fc.assert(
      fc.asyncProperty(
        worldArbitrary,
        fc.constantFrom(...users),
        conversation,
        fc.constantFrom("m0", "m1", "m2"),
        async (world, user, conversationId, messageId) => {
          const caller: Caller = { kind: "user", userId: user };
          const { policy, close } = await buildPolicy(world);
          try {
            const mine = world.messages.some(
              (m) => m.messageId === messageId && m.senderId === user,
            );
            const outsider =
              (await actual(policy, caller, {
                rpc: "watch",
                conversationIds: [conversationId],
                senderId: "",
              })) !== "allowed";
            fc.pre(outsider && !mine);
            const answers = await Promise.all(
              [
                { conversationId, messageIds: [messageId] },
                { conversationId, messageIds: ["never-tracked"] },
                { conversationId: "never-used", messageIds: [messageId] },
              ].map((request) =>
                policy.authorizeGetReceipts(tenant, caller, request).then(
                  () => "allowed",
                  (e: ReceiptError) => `${e.kind}: ${e.message}`,
                ),
              ),
            );
            expect(new Set(answers).size, answers.join(" | ")).toBe(1);
          } finally {
            close();
          }
        },
      ),
      { numRuns: 100 },
    );
  });
});
