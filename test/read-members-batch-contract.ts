import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AccessPolicy } from "../src/domain/access-policy.js";
import { serviceCaller } from "../src/domain/caller.js";
import { limits } from "../src/domain/limits.js";
import { MembershipService } from "../src/domain/membership-service.js";
import type { MessageReadMembers, ReadFilter, ReadMember } from "../src/domain/model.js";
import { ReceiptService } from "../src/domain/receipt-service.js";
import { defaultTenantSettings } from "../src/domain/tenant-settings.js";
import type { ReceiptStore } from "../src/store/receipt-store.js";
import type { ContractBackend } from "./store-contract.js";
import {
  c2cMessage,
  expectReceiptError,
  groupMessage,
  minutes,
  t0,
  users,
} from "./support/fixtures.js";

/** The store with every call counted, and the rows (items of arrays, entries of maps) it returned. */
function countingStore(store: ReceiptStore) {
  const calls: string[] = [];
  const rows = new Map<string, number>();
  const sizeOf = (value: unknown): number => {
    if (value instanceof Map || value instanceof Set) return value.size;
    if (Array.isArray(value)) {
      return value.reduce<number>((n, item) => n + (Array.isArray(item) ? item.length : 1), 0);
    }
    return value === undefined ? 0 : 1;
  };
  const counted = new Proxy(store, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== "function" || typeof property !== "string") return value;
      return async (...args: unknown[]) => {
        calls.push(property);
        const result: unknown = await (value as (...a: unknown[]) => unknown).apply(target, args);
        rows.set(property, (rows.get(property) ?? 0) + sizeOf(result));
        return result;
      };
    },
  });
  return {
    store: counted,
    calls,
    rows,
    reset() {
      calls.length = 0;
      rows.clear();
    },
  };
}

/**
 * BatchGetReadMembers (issue 20) and receiver_read_at, run against one backend: the first
 * pages equal ListReadMembers', the call reads no more than its pages and the counts, and a
 * C2C read time is the read's, not the answer's.
 */
export function describeReadMembersBatchContract(
  backendName: string,
  openBackend: () => Promise<ContractBackend>,
): void {
  describe(`BatchGetReadMembers and receiver_read_at on ${backendName}`, () => {
    let backend: ContractBackend;
    let counting: ReturnType<typeof countingStore>;
    let receipts: ReceiptService;
    let membership: MembershipService;
    let tenant: string;
    /** The service's clock: each test sets it before the calls whose time it checks. */
    let now = t0;
    /** The tenant's largest group with member lists: each batch() call sets it. */
    let maxGroupSizeForMemberLists = defaultTenantSettings.maxGroupSizeForMemberLists;

    beforeAll(async () => {
      backend = await openBackend();
      counting = countingStore(backend.store);
      receipts = new ReceiptService({
        store: counting.store,
        feed: backend.feed,
        clock: () => now,
        policy: new AccessPolicy({
          store: counting.store,
          settingsOf: () => ({ ...defaultTenantSettings, maxGroupSizeForMemberLists }),
        }),
      });
      membership = new MembershipService(backend);
    });
    afterAll(async () => {
      await backend?.close();
    });
    beforeEach(() => {
      tenant = `t-${randomUUID()}`;
      now = minutes(60);
    });

    const batch = (
      conversationId: string,
      messageIds: readonly string[],
      pageSize = 0,
      maxGroupSize = 10_000,
    ): Promise<MessageReadMembers[]> => {
      maxGroupSizeForMemberLists = maxGroupSize;
      return receipts.batchGetReadMembers(tenant, serviceCaller, {
        conversationId,
        messageIds,
        pageSize,
      });
    };

    const send = (conversationId: string, readerId: string, messageIds: string[]) =>
      receipts.sendReceipts(tenant, serviceCaller, { conversationId, readerId, messageIds });
    const markRead = (conversationId: string, readerId: string, readUpTo: number) =>
      receipts.markConversationRead(tenant, serviceCaller, { conversationId, readerId, readUpTo });
    const receiptsOf = (conversationId: string, messageIds: string[]) =>
      receipts.getReceipts(tenant, serviceCaller, { conversationId, messageIds });

    const listPage = (
      conversationId: string,
      messageId: string,
      filter: ReadFilter,
      pageSize: number,
      pageToken = "",
    ) =>
      receipts.listReadMembers(tenant, serviceCaller, {
        conversationId,
        messageId,
        filter,
        pageSize,
        pageToken,
      });

    const listRest = async (
      conversationId: string,
      messageId: string,
      filter: ReadFilter,
      pageSize: number,
      pageToken: string,
    ): Promise<ReadMember[]> => {
      const rest: ReadMember[] = [];
      for (let token = pageToken; token !== ""; ) {
        const page = await listPage(conversationId, messageId, filter, pageSize, token);
        rest.push(...page.items);
        token = page.nextPageToken;
      }
      return rest;
    };

    /** Members from minute 0; `readers[i]` read message `m<i>` (sent by "sender" at minute 10 + i). */
    const seedGroup = async (
      members: readonly string[],
      readers: readonly (readonly string[])[],
    ) => {
      await membership.addMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: ["sender"],
        joinedAt: t0,
      });
      for (let i = 0; i < members.length; i += limits.maxUsersPerMembershipCall) {
        const userIds = members.slice(i, i + limits.maxUsersPerMembershipCall);
        await membership.addMembers(tenant, serviceCaller, { groupId: "g", userIds, joinedAt: t0 });
      }
      const ids = readers.map((_, i) => `m${i}`);
      await receipts.trackMessages(
        tenant,
        serviceCaller,
        ids.map((id, i) => groupMessage(id, "g", "sender", minutes(10 + i))),
      );
      const byReader = new Map<string, string[]>();
      readers.forEach((who, i) => {
        for (const reader of who) byReader.set(reader, [...(byReader.get(reader) ?? []), `m${i}`]);
      });
      for (const [readerId, messageIds] of byReader) {
        await send("g", readerId, messageIds);
      }
      return ids;
    };

    /**
     * Each message's pages equal ListReadMembers' first pages and, unless `firstOnly`, their
     * tokens go on with it to the whole lists.
     */
    const expectListReadMembersPages = async (
      found: readonly MessageReadMembers[],
      pageSize: number,
      firstOnly = false,
    ) => {
      for (const { receipt, read, unread } of found) {
        const { conversationId, messageId } = receipt.message;
        expect(read).toEqual(await listPage(conversationId, messageId, "read", pageSize));
        expect(unread).toEqual(await listPage(conversationId, messageId, "unread", pageSize));
        if (firstOnly) continue;
        const allRead = [
          ...read.items,
          ...(await listRest(conversationId, messageId, "read", pageSize, read.nextPageToken)),
        ];
        const allUnread = [
          ...unread.items,
          ...(await listRest(conversationId, messageId, "unread", pageSize, unread.nextPageToken)),
        ];
        expect(allRead).toHaveLength(receipt.readCount);
        expect(allUnread).toHaveLength(receipt.unreadCount);
      }
    };

    it("answers in request order with each message's receipt and the first pages of ListReadMembers", async () => {
      const members = users("u", 12);
      await seedGroup(members, [
        [],
        members.slice(0, 3),
        members,
        members.filter((_, i) => i % 2 === 1),
      ]);
      const order = ["m2", "m0", "m3", "m1", "m2"];
      const found = await batch("g", order, 4);
      expect(found.map((f) => f.receipt.message.messageId)).toEqual(order);
      expect(found.map((f) => f.receipt)).toEqual(await receiptsOf("g", order));
      expect(found.map((f) => [f.receipt.readCount, f.receipt.unreadCount])).toEqual([
        [12, 0],
        [0, 12],
        [6, 6],
        [3, 9],
        [12, 0],
      ]);
      expect(found[2]?.read.items.map((m) => m.userId)).toEqual([
        "u000001",
        "u000003",
        "u000005",
        "u000007",
      ]);
      expect(found[2]?.read.items.every((m) => m.readAt === now)).toBe(true);
      expect(found[2]?.unread.items.every((m) => m.readAt === undefined)).toBe(true);
      expect(found[3]?.read.nextPageToken).toBe(""); // three readers fit a page of four
      expect(found[0]?.read.nextPageToken).not.toBe("");
      expect(found[0]?.unread).toEqual({ items: [], nextPageToken: "" });
      await expectListReadMembersPages(found, 4);
    });

    it("answers a C2C message with its receiver on the side they are on, with the read time", async () => {
      now = minutes(20);
      await receipts.trackMessages(tenant, serviceCaller, [
        c2cMessage("a1", "dm", "ann", "ben", minutes(1)),
        c2cMessage("a2", "dm", "ann", "ben", minutes(2)),
      ]);
      await send("dm", "ben", ["a1"]);
      now = minutes(90);
      const [a1, a2] = await batch("dm", ["a1", "a2"]);
      expect(a1?.receipt).toMatchObject({ receiverRead: true, receiverReadAt: minutes(20) });
      expect(a1?.read).toEqual({
        items: [{ userId: "ben", readAt: minutes(20) }],
        nextPageToken: "",
      });
      expect(a1?.unread).toEqual({ items: [], nextPageToken: "" });
      expect(a2?.receipt.receiverRead).toBe(false);
      expect(a2?.receipt.receiverReadAt).toBeUndefined();
      expect(a2?.read).toEqual({ items: [], nextPageToken: "" });
      expect(a2?.unread).toEqual({ items: [{ userId: "ben" }], nextPageToken: "" });
      await expectListReadMembersPages([a1, a2] as MessageReadMembers[], 100);
    });

    it("validates like GetReceipts: one bad id fails the whole call", async () => {
      await seedGroup(users("u", 3), [[], []]);
      await receipts.trackMessages(tenant, serviceCaller, [
        groupMessage("elsewhere", "h", "sender", minutes(1)),
      ]);
      await expectReceiptError(batch("g", []), "invalid_argument", "message_ids");
      const fiftyOne = Array.from({ length: 51 }, () => "m0");
      await expectReceiptError(batch("g", fiftyOne), "invalid_argument", "message_ids");
      expect(await batch("g", fiftyOne.slice(1))).toHaveLength(50);
      await expectReceiptError(batch("g", ["m0", ""]), "invalid_argument", "message_ids[1]");
      await expectReceiptError(batch("g", ["m0", "m1", "nope"]), "not_found", "message_ids[2]");
      await expectReceiptError(
        batch("g", ["elsewhere", "m0"]),
        "invalid_argument",
        "message_ids[0]",
      );
      await expectReceiptError(batch("", ["m0"]), "invalid_argument", "conversation_id");
    });

    it("defaults the page size to 100 and serves a larger one at 1,000", async () => {
      const members = users("u", 1_005);
      await seedGroup(members, [members.slice(0, 3)]);
      const [byDefault] = await batch("g", ["m0"]);
      expect(byDefault?.read.items).toHaveLength(3);
      expect(byDefault?.unread.items).toHaveLength(100);
      const [capped] = await batch("g", ["m0"], 5_000);
      expect(capped?.unread.items).toHaveLength(1_000);
      expect(capped?.unread.nextPageToken).not.toBe("");
      await expectListReadMembersPages([capped] as MessageReadMembers[], 1_000);
    }, 60_000);

    it("applies the tenant's largest group with member lists to each message's own group size", async () => {
      await seedGroup(users("u", 3), [[]]); // m0: 4 members with the sender
      await membership.addMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: ["v1", "v2"],
        joinedAt: minutes(20),
      });
      await receipts.trackMessages(tenant, serviceCaller, [
        groupMessage("big", "g", "sender", minutes(30)),
      ]);
      expect(await batch("g", ["m0"], 0, 4)).toHaveLength(1);
      await expectReceiptError(
        batch("g", ["m0", "big"], 0, 4),
        "failed_precondition",
        "message_ids[1]",
      );
      expect(await batch("g", ["m0", "big"], 0, 6)).toHaveLength(2);
    });

    it("reads a 50-message page budget in a 10,000-member group, and the pages equal ListReadMembers'", async () => {
      const members = users("u", 9_999); // and the sender: 10,000, the default maxGroupSize
      // Message i was read by every (i + 1)-th of the first 400 members, so some pages are full.
      const readers = Array.from({ length: limits.maxIdsPerBatchGetReadMembers }, (_, i) =>
        members.slice(0, 400).filter((_, k) => k % (i + 1) === 0),
      );
      const ids = await seedGroup(members, readers);
      const pageSize = 20;
      await receipts.announcer.idle(); // publishes of the receipts above run after their answers
      counting.reset();
      const found = await batch("g", ids, pageSize);
      // What the counts cost (the messages, the group sizes, the read counts) and one call for the pages.
      expect(counting.calls.sort()).toEqual(
        ["getMessages", "listFirstPages", "membershipAt", "readCounts"].sort(),
      );
      // Every page read with one row more than it returns, never more.
      expect(counting.rows.get("listFirstPages")).toBeLessThanOrEqual(
        2 * ids.length * (pageSize + 1),
      );
      expect(counting.rows.get("listFirstPages")).toBe(
        found.reduce((n, f) => n + f.read.items.length + f.unread.items.length, 0) +
          found.filter((f) => f.read.nextPageToken !== "").length +
          found.filter((f) => f.unread.nextPageToken !== "").length,
      );
      expect(found.map((f) => f.receipt.readCount)).toEqual(readers.map((r) => r.length));
      expect(found.every((f) => f.receipt.unreadCount === 9_999 - f.receipt.readCount)).toBe(true);
      await expectListReadMembersPages(found, pageSize, true);
      // The tokens go on: the second page of the message with the most readers.
      const second = await listPage("g", "m0", "read", pageSize, found[0]?.read.nextPageToken);
      expect(second.items[0]?.userId).toBe("u000020");
    }, 240_000);

    describe("receiver_read_at", () => {
      it("is the time of the receiver's first read in GetReceipts, SendReceipts, watch updates and the batch", async () => {
        await receipts.trackMessages(tenant, serviceCaller, [
          c2cMessage("a1", "dm", "ann", "ben", minutes(1)),
          c2cMessage("b1", "dm", "ben", "ann", minutes(2)),
        ]);
        const head = await backend.feed.head(tenant);
        now = minutes(61);
        const [sent] = await send("dm", "ben", ["a1"]);
        expect(sent).toMatchObject({ receiverRead: true, receiverReadAt: minutes(61) });
        now = minutes(200);
        const [again] = await send("dm", "ben", ["a1"]);
        expect(again?.receiverReadAt).toBe(minutes(61));
        // The sender's own receipt records nothing and answers the receiver's time.
        const [own] = await send("dm", "ann", ["a1"]);
        expect(own?.receiverReadAt).toBe(minutes(61));
        now = minutes(300);
        const got = await receiptsOf("dm", ["a1", "b1"]);
        expect(got.map((r) => r.receiverReadAt)).toEqual([minutes(61), undefined]);
        expect((await batch("dm", ["a1"]))[0]?.receipt.receiverReadAt).toBe(minutes(61));
        const changes = await backend.feed.readAfter(tenant, head, 10);
        expect(changes.map((c) => c.change)).toEqual([
          expect.objectContaining({
            kind: "receipt",
            readAt: minutes(61),
            receipt: expect.objectContaining({ receiverReadAt: minutes(61) }),
          }),
        ]);
      });

      it("is when the horizon was set for a message read through MarkConversationRead", async () => {
        await receipts.trackMessages(tenant, serviceCaller, [
          c2cMessage("a1", "dm", "ann", "ben", minutes(1)),
          c2cMessage("a2", "dm", "ann", "ben", minutes(2)),
        ]);
        now = minutes(70);
        await send("dm", "ben", ["a1"]);
        now = minutes(80);
        await markRead("dm", "ben", minutes(5));
        now = minutes(400);
        const got = await receiptsOf("dm", ["a1", "a2"]);
        // a1 was read before the horizon: its own read stays its time.
        expect(got.map((r) => r.receiverReadAt)).toEqual([minutes(70), minutes(80)]);
      });

      it("is the time of the horizon that covered a message tracked after it was set", async () => {
        await receipts.trackMessages(tenant, serviceCaller, [
          c2cMessage("a0", "dm", "ann", "ben", minutes(0)),
        ]);
        now = minutes(100);
        await markRead("dm", "ben", minutes(5));
        now = minutes(200);
        await markRead("dm", "ben", minutes(10));
        now = minutes(300);
        await receipts.trackMessages(tenant, serviceCaller, [
          c2cMessage("late1", "dm", "ann", "ben", minutes(3)),
          c2cMessage("late2", "dm", "ann", "ben", minutes(5)),
          c2cMessage("late3", "dm", "ann", "ben", minutes(8)),
          c2cMessage("after", "dm", "ann", "ben", minutes(12)),
        ]);
        now = minutes(500);
        const got = await receiptsOf("dm", ["a0", "late1", "late2", "late3", "after"]);
        expect(got.map((r) => r.receiverReadAt)).toEqual([
          minutes(100),
          minutes(100),
          minutes(100),
          minutes(200),
          undefined,
        ]);
        const [late3] = await batch("dm", ["late3"]);
        expect(late3?.read.items).toEqual([{ userId: "ben", readAt: minutes(200) }]);
      });

      it("gives a group member's late-tracked read the horizon's time too, and groups no receiver time", async () => {
        await seedGroup(["bob"], [[]]);
        now = minutes(100);
        await markRead("g", "bob", minutes(50));
        now = minutes(300);
        await receipts.trackMessages(tenant, serviceCaller, [
          groupMessage("late", "g", "sender", minutes(40)),
        ]);
        const [late] = await batch("g", ["late"]);
        expect(late?.receipt.receiverReadAt).toBeUndefined();
        expect(late?.read.items).toEqual([{ userId: "bob", readAt: minutes(100) }]);
      });
    });
  });
}
