import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AccessPolicy } from "../src/domain/access-policy.js";
import { serviceCaller } from "../src/domain/caller.js";
import { MembershipService } from "../src/domain/membership-service.js";
import type { MessageReceipt, ReadMember, TrackedMessage } from "../src/domain/model.js";
import { ReceiptService } from "../src/domain/receipt-service.js";
import { defaultTenantSettings } from "../src/domain/tenant-settings.js";
import { exportUserData } from "../src/domain/user-data-export.js";
import { type ErasureProgress, UserErasure } from "../src/domain/user-erasure.js";
import type { ReceiptStore } from "../src/store/receipt-store.js";
import type { UserDataRecord } from "../src/store/user-data-store.js";
import type { ContractBackend } from "./store-contract.js";
import {
  c2cMessage,
  expectReceiptError,
  groupMessage,
  minutes,
  users,
} from "./support/fixtures.js";

export interface UserDataContractOptions {
  /** Members of the large group and messages its erased member read (issue #16: 100,000 and 10,000). */
  readonly largeGroup: { readonly members: number; readonly messages: number };
  /** Another instance on the same data (its own memory), where a backend can have several. */
  readonly openPeer?: () => Promise<ContractBackend>;
}

/** Erases a user to the end, a call at a time, as the CLI does; returns every answer. */
export async function eraseToTheEnd(
  erasure: UserErasure,
  tenant: string,
  userId: string,
): Promise<ErasureProgress[]> {
  const answers: ErasureProgress[] = [];
  for (let calls = 0; calls < 100_000; calls++) {
    const answer = await erasure.eraseUser(tenant, serviceCaller, { userId });
    answers.push(answer);
    if (answer.done) return answers;
  }
  throw new Error("the erasure never finished");
}

export async function collect(records: AsyncIterable<UserDataRecord>): Promise<UserDataRecord[]> {
  const all: UserDataRecord[] = [];
  for await (const record of records) all.push(record);
  return all;
}

/**
 * The rules of EraseUser and ExportUserData (issue #16), run against one backend: what an
 * erasure removes, that every other count stays exact, resuming after an interruption,
 * idempotence, refusals while it runs, and the export's contents.
 */
export function describeUserDataContract(
  backendName: string,
  openBackend: () => Promise<ContractBackend>,
  options: UserDataContractOptions,
): void {
  describe(`user data rules on ${backendName}`, () => {
    let backend: ContractBackend;
    let store: ReceiptStore;
    let receipts: ReceiptService;
    let membership: MembershipService;
    let erasure: UserErasure;
    let tenant: string;

    beforeAll(async () => {
      backend = await openBackend();
      store = backend.store;
      // Member lists of any group: the large-group test lists the readers of one of its messages.
      const policy = new AccessPolicy({
        store: backend.store,
        settingsOf: () => ({ ...defaultTenantSettings, maxGroupSizeForMemberLists: Infinity }),
      });
      receipts = new ReceiptService({ ...backend, policy });
      membership = new MembershipService(backend);
      erasure = new UserErasure({ store });
    });
    afterAll(async () => {
      await backend?.close();
    });
    beforeEach(() => {
      tenant = `t-${randomUUID()}`;
    });

    const receiptOf = async (conversationId: string, messageId: string) =>
      (
        await receipts.getReceipts(tenant, serviceCaller, {
          conversationId,
          messageIds: [messageId],
        })
      )[0] as MessageReceipt;
    const listAll = async (messageId: string, filter: "read" | "unread") => {
      const all: ReadMember[] = [];
      let pageToken = "";
      do {
        const page = await receipts.listReadMembers(tenant, serviceCaller, {
          conversationId: "g",
          messageId,
          filter,
          pageSize: 2,
          pageToken,
        });
        all.push(...page.items);
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      return all.map((m) => m.userId);
    };
    const send = (conversationId: string, readerId: string, messageIds: string[]) =>
      receipts.sendReceipts(tenant, serviceCaller, { conversationId, readerId, messageIds });

    /**
     * Group g: sender s, erased u, and a, b, c, with membership changes before, during and
     * after u's two intervals, so that the group has many versions of its size. u reads,
     * sends, marks read; C2C conversations both ways with s.
     */
    const setUpUser = async () => {
      await membership.addMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: ["s", "a", "b"],
        joinedAt: minutes(0),
      });
      await membership.addMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: ["u"],
        joinedAt: minutes(5),
      });
      await membership.addMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: ["c"],
        joinedAt: minutes(15),
      });
      await membership.removeMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: ["u"],
        leftAt: minutes(25),
      });
      await membership.removeMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: ["b"],
        leftAt: minutes(35),
      });
      await membership.addMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: ["u"],
        joinedAt: minutes(40),
      });
      await receipts.trackMessages(tenant, serviceCaller, [
        groupMessage("m1", "g", "s", minutes(10)), // s a b u
        groupMessage("m2", "g", "s", minutes(20)), // s a b u c
        groupMessage("m3", "g", "s", minutes(30)), // s a b c
        groupMessage("m4", "g", "u", minutes(45)), // s a c u
        groupMessage("m5", "g", "s", minutes(50)), // s a c u
        c2cMessage("d1", "su", "s", "u", minutes(11)),
        c2cMessage("d2", "su", "u", "s", minutes(12)),
      ]);
      await send("g", "u", ["m1", "m2", "m5"]);
      await send("g", "a", ["m1", "m4", "m5"]);
      await send("g", "s", ["m4"]);
      await send("su", "u", ["d1"]);
      await send("su", "s", ["d2"]);
      await receipts.markConversationRead(tenant, serviceCaller, {
        conversationId: "g",
        readerId: "u",
        readUpTo: minutes(20),
      });
    };

    it("exports everything stored about a user, and nothing of others", async () => {
      await setUpUser();
      const exported = await collect(exportUserData(store, tenant, serviceCaller, { userId: "u" }));
      const byKind = Map.groupBy(exported, (r) => r.kind);
      expect(
        (byKind.get("receipt") ?? []).map((r) => r.kind === "receipt" && r.messageId).sort(),
      ).toEqual(["d1", "m1", "m2", "m5"]);
      expect(byKind.get("horizon")).toEqual([
        { kind: "horizon", conversationId: "g", readUpTo: minutes(20) },
      ]);
      expect(byKind.get("horizon_set")).toEqual([
        expect.objectContaining({
          kind: "horizon_set",
          conversationId: "g",
          readUpTo: minutes(20),
        }),
      ]);
      expect(byKind.get("membership")).toEqual([
        { kind: "membership", groupId: "g", joinedAt: minutes(5), leftAt: minutes(25) },
        { kind: "membership", groupId: "g", joinedAt: minutes(40), leftAt: undefined },
      ]);
      expect(
        (byKind.get("message") ?? [])
          .map((r) => r.kind === "message" && r.message.messageId)
          .sort(),
      ).toEqual(["d1", "d2", "m4"]);
      for (const record of byKind.get("receipt") ?? []) {
        expect(record).toMatchObject({ readAt: expect.any(Number) });
      }
      await expectReceiptError(
        collect(exportUserData(store, tenant, serviceCaller, { userId: "" })),
        "invalid_argument",
        "user_id",
      );
    });

    /** The audience of each message once u is erased: members at sent_at minus the sender. */
    const expected: Record<string, { read: string[]; unread: string[] }> = {
      m1: { read: ["a"], unread: ["b"] },
      m2: { read: [], unread: ["a", "b", "c"] },
      m3: { read: [], unread: ["a", "b", "c"] },
      m4: { read: ["a", "s"], unread: ["c"] },
      m5: { read: ["a"], unread: ["c"] },
    };
    const countsOf = async (service: ReceiptService) =>
      (
        await service.getReceipts(tenant, serviceCaller, {
          conversationId: "g",
          messageIds: Object.keys(expected),
        })
      ).map((r) => [r.message.messageId, r.readCount, r.unreadCount]);
    const expectedCounts = Object.entries(expected).map(([id, { read, unread }]) => [
      id,
      read.length,
      unread.length,
    ]);

    it("exports and erases the user's receipt settings and private reads, and no one else's", async () => {
      await setUpUser();
      await store.putReceiptSettings(tenant, "u", [
        { conversationId: "", visibility: "private" },
        { conversationId: "g", visibility: "shared" },
      ]);
      await store.putReceiptSettings(tenant, "a", [{ conversationId: "", visibility: "private" }]);
      const m3 = (await store.getMessages(tenant, ["m3"])).get("m3") as TrackedMessage;
      await store.insertPrivateReceipts(tenant, "u", [{ message: m3, readAt: minutes(31) }]);
      await store.insertPrivateReceipts(tenant, "a", [{ message: m3, readAt: minutes(32) }]);
      const exported = await collect(exportUserData(store, tenant, serviceCaller, { userId: "u" }));
      expect(exported.filter((r) => r.kind.startsWith("receipt_setting"))).toEqual([
        { kind: "receipt_setting", conversationId: "", visibility: "private" },
        { kind: "receipt_setting", conversationId: "g", visibility: "shared" },
      ]);
      expect(exported.filter((r) => r.kind === "private_receipt")).toEqual([
        { kind: "private_receipt", conversationId: "g", messageId: "m3", readAt: minutes(31) },
      ]);
      const last = (await eraseToTheEnd(erasure, tenant, "u")).at(-1) as ErasureProgress;
      expect(last.removed).toMatchObject({ privacy: 3 });
      expect(await store.getReceiptSettings(tenant, "u")).toMatchObject({
        defaultVisibility: undefined,
      });
      expect(await store.listPrivateReceipts(tenant, "u", undefined, 10)).toEqual([]);
      expect(await store.getReceiptSettings(tenant, "a")).toMatchObject({
        defaultVisibility: "private",
      });
      expect(await store.listPrivateReceipts(tenant, "a", undefined, 10)).toHaveLength(1);
    });

    it("erases every receipt, horizon and membership of the user; every other count stays exact", async () => {
      await setUpUser();
      // Counts read before: whatever this instance remembers of the group must not outlive it.
      expect(await countsOf(receipts)).toEqual([
        ["m1", 2, 1],
        ["m2", 1, 3],
        ["m3", 0, 3],
        ["m4", 2, 1],
        ["m5", 2, 1],
      ]);
      const answers = await eraseToTheEnd(erasure, tenant, "u");
      const last = answers.at(-1) as ErasureProgress;
      expect(last).toMatchObject({ done: true, step: "" });
      expect(last.removed).toMatchObject({
        horizons: 1,
        horizon_set_times: 1,
        receipts: 4,
        memberships: 2,
        messages_pseudonymised: 3,
      });
      expect(await collect(exportUserData(store, tenant, serviceCaller, { userId: "u" }))).toEqual(
        [],
      );

      expect(await countsOf(receipts)).toEqual(expectedCounts);
      for (const [messageId, { read, unread }] of Object.entries(expected)) {
        expect(await receiptOf("g", messageId), messageId).toMatchObject({
          readCount: read.length,
          unreadCount: unread.length,
        });
        expect(await listAll(messageId, "read"), messageId).toEqual(read);
        expect(await listAll(messageId, "unread"), messageId).toEqual(unread);
      }
      // Group sizes of every version: the user was counted in those of minutes 5 to 25 and 40 on.
      const sizes = await Promise.all(
        [0, 5, 10, 15, 20, 25, 30, 35, 40, 45].map((m) =>
          store.memberCountAt(tenant, "g", minutes(m)),
        ),
      );
      expect(sizes).toEqual([3, 3, 3, 4, 4, 4, 4, 3, 3, 3]);
      expect(await store.listCurrentMembers(tenant, "g", undefined, 10)).toEqual([
        { userId: "a", joinedAt: minutes(0) },
        { userId: "c", joinedAt: minutes(15) },
        { userId: "s", joinedAt: minutes(0) },
      ]);
      // Messages sent and received stay tracked, the user's id erased.
      expect((await receiptOf("g", "m4")).message.senderId).toBe("");
      expect(await receiptOf("su", "d1")).toMatchObject({
        message: expect.objectContaining({ senderId: "s", receiverId: "" }),
        readCount: 0,
        unreadCount: 0,
        receiverRead: false,
      });
      expect(await receiptOf("su", "d2")).toMatchObject({
        message: expect.objectContaining({ senderId: "", receiverId: "s" }),
        readCount: 1,
        unreadCount: 0,
      });
      expect((await store.getConversation(tenant, "su"))?.participants).not.toContain("u");
      expect(await store.getHorizon(tenant, "g", "u")).toBeUndefined();
      expect(await store.horizonsFrom(tenant, "g", 0)).toEqual([]);
      expect(await store.horizonSetTimes(tenant, "g", "u", [minutes(10)])).toEqual([undefined]);
      // Others keep what is theirs.
      const ofA = await collect(exportUserData(store, tenant, serviceCaller, { userId: "a" }));
      expect(ofA.filter((r) => r.kind === "receipt")).toHaveLength(3);
    });

    it.runIf(options.openPeer !== undefined)(
      "leaves nothing stale on another instance that remembered the group and the counts",
      async () => {
        const peer = await (options.openPeer as () => Promise<ContractBackend>)();
        try {
          await setUpUser();
          const there = new ReceiptService(peer);
          expect((await countsOf(there))[0]).toEqual(["m1", 2, 1]);
          await eraseToTheEnd(erasure, tenant, "u");
          expect(await countsOf(there)).toEqual(expectedCounts);
          expect(await peer.store.memberCountAt(tenant, "g", minutes(10))).toBe(3);
        } finally {
          await peer.close();
        }
      },
    );

    it("is idempotent: erasing again finds nothing and keeps the totals", async () => {
      await setUpUser();
      const first = (await eraseToTheEnd(erasure, tenant, "u")).at(-1);
      const again = await erasure.eraseUser(tenant, serviceCaller, { userId: "u" });
      expect(again).toMatchObject({ done: true, removed: first?.removed });
      const never = await erasure.eraseUser(tenant, serviceCaller, { userId: "nobody" });
      expect(never.done).toBe(true);
      expect(Object.values(never.removed).every((n) => n === 0)).toBe(true);
      await expectReceiptError(
        erasure.eraseUser(tenant, serviceCaller, { userId: "" }),
        "invalid_argument",
        "user_id",
      );
    });

    it("works in bounded chunks, saving its progress after each, and refuses new data meanwhile", async () => {
      await setUpUser();
      const slow = new UserErasure({ store, chunkSize: 1, callBudgetMs: 0 });
      const first = await slow.eraseUser(tenant, serviceCaller, { userId: "u" });
      expect(first).toMatchObject({ done: false, step: "horizons" });
      const policy = new AccessPolicy({ store });
      await expectReceiptError(
        policy.authorizeSendReceipts(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "u",
          messageIds: ["m3"],
        }),
        "failed_precondition",
        "reader_id",
      );
      await expectReceiptError(
        policy.authorizeMarkConversationRead(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "u",
        }),
        "failed_precondition",
        "reader_id",
      );
      await expectReceiptError(
        membership.addMembers(tenant, serviceCaller, {
          groupId: "g2",
          userIds: ["a", "u"],
          joinedAt: minutes(60),
        }),
        "failed_precondition",
        "user_ids[1]",
      );
      await expectReceiptError(
        policy.authorizeTrackMessages(tenant, serviceCaller, [
          { ...groupMessage("m9", "g", "s", minutes(60)) },
          { ...c2cMessage("d9", "su", "s", "u", minutes(60)) },
        ]),
        "failed_precondition",
        "messages[1].receiver_id",
      );
      // Others are not held up.
      await policy.authorizeSendReceipts(tenant, serviceCaller, {
        conversationId: "g",
        readerId: "c",
        messageIds: ["m3"],
      });
      const answers = [first, ...(await eraseToTheEnd(slow, tenant, "u"))];
      // One row per call: the totals only grow, and the last call is the one that is done.
      expect(answers.length).toBeGreaterThan(10);
      expect(answers.filter((a) => a.done)).toHaveLength(1);
      expect(answers.at(-1)?.removed).toMatchObject({ receipts: 4, memberships: 2 });
      // Done: the id is accepted again, as a new user.
      await membership.addMembers(tenant, serviceCaller, {
        groupId: "g2",
        userIds: ["u"],
        joinedAt: minutes(60),
      });
      expect(await store.memberCountAt(tenant, "g2", minutes(61))).toBe(1);
    });

    it("completes an erasure interrupted half way, with nothing left", async () => {
      await setUpUser();
      let crashes = 0;
      // A process that dies after a chunk removed its rows and before its progress was saved.
      const crashing = new Proxy(store, {
        get(target, property, receiver) {
          const value = Reflect.get(target, property, receiver);
          if (property !== "eraseReceiptsOf" || typeof value !== "function") {
            return typeof value === "function" ? value.bind(target) : value;
          }
          return async (...args: unknown[]) => {
            const chunk = await (value as (...a: unknown[]) => Promise<unknown>).apply(
              target,
              args,
            );
            crashes++;
            throw new Error(`killed after a chunk (${JSON.stringify(chunk)})`);
          };
        },
      });
      await expect(
        new UserErasure({ store: crashing, chunkSize: 2 }).eraseUser(tenant, serviceCaller, {
          userId: "u",
        }),
      ).rejects.toThrow(/killed after a chunk/);
      expect(crashes).toBe(1);
      expect((await store.erasureOf(tenant, "u"))?.state).toBe("erasing");
      const answers = await eraseToTheEnd(new UserErasure({ store }), tenant, "u");
      expect(answers.at(-1)?.done).toBe(true);
      // The two receipts of the lost chunk were removed but never counted.
      expect(answers.at(-1)?.removed.receipts).toBe(2);
      expect(await collect(exportUserData(store, tenant, serviceCaller, { userId: "u" }))).toEqual(
        [],
      );
      expect(await receiptOf("g", "m1")).toMatchObject({ readCount: 1, unreadCount: 1 });
      expect(await receiptOf("g", "m5")).toMatchObject({ readCount: 1, unreadCount: 1 });
    });

    it(`keeps every other count exact when a user who read ${options.largeGroup.messages} messages leaves a ${options.largeGroup.members}-member group`, async () => {
      const { members, messages } = options.largeGroup;
      const everyone = ["sender", "u", "z", ...users("m", members - 3)];
      for (let i = 0; i < everyone.length; i += 1_000) {
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: everyone.slice(i, i + 1_000),
          joinedAt: minutes(0),
        });
      }
      const ids = Array.from({ length: messages }, (_, i) => `msg${String(i).padStart(6, "0")}`);
      for (let i = 0; i < ids.length; i += 1_000) {
        await receipts.trackMessages(
          tenant,
          serviceCaller,
          ids
            .slice(i, i + 1_000)
            .map((id, k) => groupMessage(id, "g", "sender", minutes(10 + i + k))),
        );
      }
      for (let i = 0; i < ids.length; i += 100) {
        await send("g", "u", ids.slice(i, i + 100));
        await send("g", "z", ids.slice(i, i + 100));
      }
      const started = performance.now();
      const answers = await eraseToTheEnd(erasure, tenant, "u");
      const seconds = (performance.now() - started) / 1000;
      console.info(
        `${backendName}: erased ${messages} receipts in a ${members}-member group in ${seconds.toFixed(1)} s, ${answers.length} calls`,
      );
      expect(answers.at(-1)?.removed).toMatchObject({ receipts: messages, memberships: 1 });
      for (let i = 0; i < ids.length; i += 100) {
        const got = await receipts.getReceipts(tenant, serviceCaller, {
          conversationId: "g",
          messageIds: ids.slice(i, i + 100),
        });
        for (const receipt of got) {
          expect(receipt).toMatchObject({ readCount: 1, unreadCount: members - 3 });
        }
      }
      expect(await store.memberCountAt(tenant, "g", minutes(5))).toBe(members - 1);
      const last = ids.at(-1) as string;
      expect(await listAll(last, "read")).toEqual(["z"]);
    }, 600_000);
  });
}
