import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { serviceCaller } from "../src/domain/caller.js";
import { limits } from "../src/domain/limits.js";
import { MembershipService } from "../src/domain/membership-service.js";
import type { MessageReceipt, ReadMember } from "../src/domain/model.js";
import { ReceiptService } from "../src/domain/receipt-service.js";
import type { ChangeFeed } from "../src/store/change-feed.js";
import type { ReceiptStore } from "../src/store/receipt-store.js";
import {
  c2cMessage,
  expectReceiptError,
  groupMessage,
  minutes,
  t0,
  users,
} from "./support/fixtures.js";

export interface ContractBackend {
  readonly store: ReceiptStore;
  readonly feed: ChangeFeed;
  close(): Promise<void>;
}

/**
 * The rules of issue #2, run against one backend. Every backend runs this
 * suite unchanged; each test works in a fresh tenant, so backends may share
 * one database between tests.
 */
export function describeReceiptContract(
  backendName: string,
  openBackend: () => Promise<ContractBackend>,
): void {
  describe(`receipt rules on ${backendName}`, () => {
    let backend: ContractBackend;
    let receipts: ReceiptService;
    let membership: MembershipService;
    let tenant: string;

    beforeAll(async () => {
      backend = await openBackend();
      receipts = new ReceiptService(backend);
      membership = new MembershipService(backend);
    });
    afterAll(async () => {
      await backend?.close();
    });
    beforeEach(() => {
      tenant = `t-${randomUUID()}`;
    });

    const receiptOf = async (
      conversationId: string,
      messageId: string,
    ): Promise<MessageReceipt> => {
      const [receipt] = await receipts.getReceipts(tenant, serviceCaller, {
        conversationId,
        messageIds: [messageId],
      });
      if (receipt === undefined) throw new Error("no receipt returned");
      return receipt;
    };

    const listAll = async (
      conversationId: string,
      messageId: string,
      filter: "read" | "unread",
      pageSize: number,
    ): Promise<ReadMember[]> => {
      const all: ReadMember[] = [];
      let pageToken = "";
      for (let pages = 0; pages < 10_000; pages++) {
        const page = await receipts.listReadMembers(tenant, serviceCaller, {
          conversationId,
          messageId,
          filter,
          pageSize,
          pageToken,
        });
        expect(page.items.length).toBeLessThanOrEqual(pageSize);
        all.push(...page.items);
        if (page.nextPageToken === "") return all;
        pageToken = page.nextPageToken;
      }
      throw new Error("listing did not finish");
    };

    /** A group g with members alice, bob, carol, dave from minute 0, and message m1 by alice at minute 10. */
    const setUpGroup = async () => {
      await membership.addMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: ["alice", "bob", "carol", "dave"],
        joinedAt: minutes(0),
      });
      await receipts.trackMessages(tenant, serviceCaller, [
        groupMessage("m1", "g", "alice", minutes(10)),
      ]);
    };

    describe("TrackMessages", () => {
      it("tracks a message with nobody having read it yet", async () => {
        await setUpGroup();
        const receipt = await receiptOf("g", "m1");
        expect(receipt).toMatchObject({ readCount: 0, unreadCount: 3, receiverRead: false });
        expect(receipt.message).toMatchObject({
          messageId: "m1",
          senderId: "alice",
          sentAt: minutes(10),
        });
      });

      it("treats re-tracking with the same data as a no-op", async () => {
        await setUpGroup();
        await receipts.sendReceipts(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "bob",
          messageIds: ["m1"],
        });
        const again = await receipts.trackMessages(tenant, serviceCaller, [
          groupMessage("m1", "g", "alice", minutes(10)),
        ]);
        expect(again.trackedCount).toBe(0);
        expect((await receiptOf("g", "m1")).readCount).toBe(1);
      });

      it("refuses re-tracking with different data with ALREADY_EXISTS and tracks nothing of the batch", async () => {
        await setUpGroup();
        await expectReceiptError(
          receipts.trackMessages(tenant, serviceCaller, [
            groupMessage("m2", "g", "bob", minutes(11)),
            groupMessage("m1", "g", "bob", minutes(10)),
          ]),
          "already_exists",
          "messages[1]",
        );
        await expectReceiptError(
          receipts.getReceipts(tenant, serviceCaller, { conversationId: "g", messageIds: ["m2"] }),
          "not_found",
        );
        expect((await receiptOf("g", "m1")).message.senderId).toBe("alice");
      });

      it("validates every message before tracking any", async () => {
        const cases: [Parameters<ReceiptService["trackMessages"]>[2], string][] = [
          [[], "messages"],
          [
            [{ ...groupMessage("m", "g", "a", t0), conversationId: "" }],
            "messages[0].conversation_id",
          ],
          [[{ ...groupMessage("m", "g", "a", t0), messageId: "" }], "messages[0].message_id"],
          [[{ ...groupMessage("m", "g", "a", t0), senderId: "" }], "messages[0].sender_id"],
          [
            [{ ...groupMessage("m", "g", "a", t0), conversationType: undefined }],
            "messages[0].conversation_type",
          ],
          [[{ ...groupMessage("m", "g", "a", t0), sentAt: undefined }], "messages[0].sent_at"],
          [[{ ...groupMessage("m", "g", "a", t0), sentAt: -1 }], "messages[0].sent_at"],
          [[{ ...groupMessage("m", "g", "a", t0), receiverId: "b" }], "messages[0].receiver_id"],
          [[{ ...c2cMessage("m", "c", "a", "b", t0), receiverId: "" }], "messages[0].receiver_id"],
          [[c2cMessage("m", "c", "a", "a", t0)], "messages[0].receiver_id"],
          [
            [
              groupMessage("ok", "g", "a", t0),
              groupMessage("m", "g", "a", t0),
              groupMessage("m", "g", "b", t0),
            ],
            "messages[2].message_id",
          ],
          [
            [groupMessage("x".repeat(limits.maxIdLength + 1), "g", "a", t0)],
            "messages[0].message_id",
          ],
          [[groupMessage("bad\nid", "g", "a", t0)], "messages[0].message_id"],
          [
            Array.from({ length: limits.maxMessagesPerTrackCall + 1 }, (_, i) =>
              groupMessage(`m${i}`, "g", "a", t0),
            ),
            "messages",
          ],
        ];
        for (const [batch, field] of cases) {
          await expectReceiptError(
            receipts.trackMessages(tenant, serviceCaller, batch),
            "invalid_argument",
            field,
          );
        }
        await expectReceiptError(
          receipts.getReceipts(tenant, serviceCaller, { conversationId: "g", messageIds: ["ok"] }),
          "not_found",
        );
      });

      it("accepts the largest batch", async () => {
        const batch = Array.from({ length: limits.maxMessagesPerTrackCall }, (_, i) =>
          groupMessage(`m${i}`, "g", "a", minutes(i)),
        );
        expect((await receipts.trackMessages(tenant, serviceCaller, batch)).trackedCount).toBe(
          limits.maxMessagesPerTrackCall,
        );
      });

      it("keeps a conversation's type and C2C pair", async () => {
        await receipts.trackMessages(tenant, serviceCaller, [
          c2cMessage("c1", "dm", "ann", "ben", t0),
        ]);
        await expectReceiptError(
          receipts.trackMessages(tenant, serviceCaller, [groupMessage("c2", "dm", "ann", t0)]),
          "failed_precondition",
          "messages[0].conversation_type",
        );
        await expectReceiptError(
          receipts.trackMessages(tenant, serviceCaller, [c2cMessage("c3", "dm", "ann", "cid", t0)]),
          "failed_precondition",
          "messages[0].receiver_id",
        );
        // The reverse direction is the same pair.
        await receipts.trackMessages(tenant, serviceCaller, [
          c2cMessage("c4", "dm", "ben", "ann", minutes(1)),
        ]);
      });
    });

    describe("audience", () => {
      it("is the members at sent_at minus the sender: later joiners out, later leavers in", async () => {
        await setUpGroup();
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["erin"],
          joinedAt: minutes(20),
        });
        await membership.removeMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["dave"],
          leftAt: minutes(30),
        });
        expect(await receiptOf("g", "m1")).toMatchObject({ readCount: 0, unreadCount: 3 });

        await expectReceiptError(
          receipts.sendReceipts(tenant, serviceCaller, {
            conversationId: "g",
            readerId: "erin",
            messageIds: ["m1"],
          }),
          "permission_denied",
          "reader_id",
        );
        await receipts.sendReceipts(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "dave",
          messageIds: ["m1"],
        });
        expect(await receiptOf("g", "m1")).toMatchObject({ readCount: 1, unreadCount: 2 });

        const unread = await listAll("g", "m1", "unread", 10);
        expect(unread.map((m) => m.userId)).toEqual(["bob", "carol"]);
      });

      it("includes a member who joined exactly at sent_at and excludes one who left exactly then", async () => {
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["a", "leaver"],
          joinedAt: minutes(0),
        });
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["joiner"],
          joinedAt: minutes(5),
        });
        await membership.removeMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["leaver"],
          leftAt: minutes(5),
        });
        await receipts.trackMessages(tenant, serviceCaller, [
          groupMessage("m", "g", "a", minutes(5)),
        ]);
        expect((await listAll("g", "m", "unread", 10)).map((m) => m.userId)).toEqual(["joiner"]);
        expect(await receiptOf("g", "m")).toMatchObject({ readCount: 0, unreadCount: 1 });
      });

      it("counts a message sent before the latest membership change from the history", async () => {
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: users("u", 5),
          joinedAt: minutes(0),
        });
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: users("v", 7),
          joinedAt: minutes(50),
        });
        await membership.removeMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["u000001"],
          leftAt: minutes(60),
        });
        await receipts.trackMessages(tenant, serviceCaller, [
          groupMessage("early", "g", "u000000", minutes(10)),
          groupMessage("late", "g", "u000000", minutes(70)),
        ]);
        expect((await receiptOf("g", "early")).unreadCount).toBe(4);
        expect((await receiptOf("g", "late")).unreadCount).toBe(10);
      });

      it("for C2C is the receiver alone", async () => {
        await receipts.trackMessages(tenant, serviceCaller, [
          c2cMessage("d1", "dm", "ann", "ben", t0),
        ]);
        expect(await receiptOf("dm", "d1")).toMatchObject({
          readCount: 0,
          unreadCount: 1,
          receiverRead: false,
        });
        await expectReceiptError(
          receipts.sendReceipts(tenant, serviceCaller, {
            conversationId: "dm",
            readerId: "eve",
            messageIds: ["d1"],
          }),
          "permission_denied",
          "reader_id",
        );
        const [after] = await receipts.sendReceipts(tenant, serviceCaller, {
          conversationId: "dm",
          readerId: "ben",
          messageIds: ["d1"],
        });
        expect(after).toMatchObject({ readCount: 1, unreadCount: 0, receiverRead: true });
        expect((await listAll("dm", "d1", "read", 10)).map((m) => m.userId)).toEqual(["ben"]);
        expect(await listAll("dm", "d1", "unread", 10)).toEqual([]);
      });
    });

    describe("SendReceipts", () => {
      it("counts a receipt once however often it is sent", async () => {
        await setUpGroup();
        for (let i = 0; i < 3; i++) {
          const [receipt] = await receipts.sendReceipts(tenant, serviceCaller, {
            conversationId: "g",
            readerId: "bob",
            messageIds: ["m1", "m1"],
          });
          expect(receipt).toMatchObject({ readCount: 1, unreadCount: 2 });
        }
      });

      it("ignores a sender's receipt for its own message", async () => {
        await setUpGroup();
        const [receipt] = await receipts.sendReceipts(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "alice",
          messageIds: ["m1"],
        });
        expect(receipt).toMatchObject({ readCount: 0, unreadCount: 3 });
        expect(await listAll("g", "m1", "read", 10)).toEqual([]);
      });

      it("answers in request order, each message with its own audience", async () => {
        await setUpGroup();
        // erin joins between m1 and m2: m2's audience is one larger.
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["erin"],
          joinedAt: minutes(10.5),
        });
        await receipts.trackMessages(tenant, serviceCaller, [
          groupMessage("m2", "g", "bob", minutes(11)),
        ]);
        const answer = await receipts.sendReceipts(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "carol",
          messageIds: ["m2", "m1", "m2"],
        });
        expect(answer.map((r) => [r.message.messageId, r.readCount, r.unreadCount])).toEqual([
          ["m2", 1, 3],
          ["m1", 1, 2],
          ["m2", 1, 3],
        ]);
        const got = await receipts.getReceipts(tenant, serviceCaller, {
          conversationId: "g",
          messageIds: ["m1", "m2"],
        });
        expect(got.map((r) => [r.message.messageId, r.readCount])).toEqual([
          ["m1", 1],
          ["m2", 1],
        ]);
      });

      it("rejects the whole call on one bad id and records nothing", async () => {
        await setUpGroup();
        await receipts.trackMessages(tenant, serviceCaller, [
          groupMessage("m2", "g", "alice", minutes(11)),
          groupMessage("other", "g2", "alice", minutes(11)),
        ]);
        const send = (messageIds: string[], readerId = "bob") =>
          receipts.sendReceipts(tenant, serviceCaller, {
            conversationId: "g",
            readerId,
            messageIds,
          });
        await expectReceiptError(send([]), "invalid_argument", "message_ids");
        await expectReceiptError(
          send(Array.from({ length: limits.maxIdsPerReceiptCall + 1 }, () => "m1")),
          "invalid_argument",
          "message_ids",
        );
        await expectReceiptError(send(["m1", "other"]), "invalid_argument", "message_ids[1]");
        const missing = await expectReceiptError(
          send(["m1", "m2", "nope"]),
          "not_found",
          "message_ids[2]",
        );
        expect(missing.message).toContain("nope");
        await expectReceiptError(send(["m1", ""]), "invalid_argument", "message_ids[1]");
        await expectReceiptError(send(["m1"], ""), "invalid_argument", "reader_id");
        await expectReceiptError(send(["m1"], "stranger"), "permission_denied", "reader_id");
        await expectReceiptError(
          receipts.sendReceipts(tenant, serviceCaller, {
            conversationId: "",
            readerId: "bob",
            messageIds: ["m1"],
          }),
          "invalid_argument",
          "conversation_id",
        );
        const after = await receipts.getReceipts(tenant, serviceCaller, {
          conversationId: "g",
          messageIds: ["m1", "m2"],
        });
        expect(after.map((r) => r.readCount)).toEqual([0, 0]);
      });

      it("accepts exactly the largest batch", async () => {
        await setUpGroup();
        const answer = await receipts.sendReceipts(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "bob",
          messageIds: Array.from({ length: limits.maxIdsPerReceiptCall }, () => "m1"),
        });
        expect(answer).toHaveLength(limits.maxIdsPerReceiptCall);
      });

      it("stays exact when many readers send concurrently, each twice", async () => {
        const readers = users("r", 60);
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "big",
          userIds: ["sender", ...readers],
          joinedAt: t0,
        });
        await receipts.trackMessages(tenant, serviceCaller, [
          groupMessage("hot", "big", "sender", minutes(1)),
        ]);
        await Promise.all(
          [...readers, ...readers].map((readerId) =>
            receipts.sendReceipts(tenant, serviceCaller, {
              conversationId: "big",
              readerId,
              messageIds: ["hot"],
            }),
          ),
        );
        expect(await receiptOf("big", "hot")).toMatchObject({ readCount: 60, unreadCount: 0 });
      });
    });

    describe("GetReceipts", () => {
      it("validates like SendReceipts", async () => {
        await setUpGroup();
        const get = (conversationId: string, messageIds: string[]) =>
          receipts.getReceipts(tenant, serviceCaller, { conversationId, messageIds });
        await expectReceiptError(get("g", []), "invalid_argument", "message_ids");
        await expectReceiptError(get("g", ["m1", "zzz"]), "not_found", "message_ids[1]");
        await expectReceiptError(get("other", ["m1"]), "invalid_argument", "message_ids[0]");
        await expectReceiptError(
          get(
            "g",
            Array.from({ length: limits.maxIdsPerReceiptCall + 1 }, () => "m1"),
          ),
          "invalid_argument",
          "message_ids",
        );
      });
    });

    describe("ListReadMembers", () => {
      const groupOf = async (size: number) => {
        const members = users("u", size);
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["sender"],
          joinedAt: t0,
        });
        for (let i = 0; i < members.length; i += limits.maxUsersPerMembershipCall) {
          const userIds = members.slice(i, i + limits.maxUsersPerMembershipCall);
          await membership.addMembers(tenant, serviceCaller, {
            groupId: "g",
            userIds,
            joinedAt: t0,
          });
        }
        await receipts.trackMessages(tenant, serviceCaller, [
          groupMessage("m", "g", "sender", minutes(1)),
        ]);
        return members;
      };

      it("splits the audience into READ and UNREAD, each member exactly once, in a stable order", async () => {
        const members = await groupOf(25);
        const readers = members.filter((_, i) => i % 3 === 0);
        for (const readerId of readers) {
          await receipts.sendReceipts(tenant, serviceCaller, {
            conversationId: "g",
            readerId,
            messageIds: ["m"],
          });
        }
        const read = await listAll("g", "m", "read", 4);
        const unread = await listAll("g", "m", "unread", 4);
        expect(read.map((m) => m.userId)).toEqual(readers);
        expect(read.every((m) => typeof m.readAt === "number" && m.readAt >= t0)).toBe(true);
        expect(unread.every((m) => m.readAt === undefined)).toBe(true);
        expect([...read, ...unread].map((m) => m.userId).sort()).toEqual(members);
        const receipt = await receiptOf("g", "m");
        expect(receipt.readCount).toBe(read.length);
        expect(receipt.unreadCount).toBe(unread.length);
      });

      it("finds the few members who have not read among many who have", async () => {
        const members = await groupOf(150);
        const holdouts = ["u000003", "u000077", "u000149"];
        await Promise.all(
          members
            .filter((u) => !holdouts.includes(u))
            .map((readerId) =>
              receipts.sendReceipts(tenant, serviceCaller, {
                conversationId: "g",
                readerId,
                messageIds: ["m"],
              }),
            ),
        );
        expect((await listAll("g", "m", "unread", 2)).map((m) => m.userId)).toEqual(holdouts);
        expect(await listAll("g", "m", "read", 100)).toHaveLength(147);
      });

      it("never repeats or skips a member whose state did not change across a page boundary", async () => {
        const members = await groupOf(30);
        const first = await receipts.listReadMembers(tenant, serviceCaller, {
          conversationId: "g",
          messageId: "m",
          filter: "unread",
          pageSize: 10,
          pageToken: "",
        });
        // Readers on both sides of the boundary change state between pages.
        for (const readerId of ["u000002", "u000015", "u000029"]) {
          await receipts.sendReceipts(tenant, serviceCaller, {
            conversationId: "g",
            readerId,
            messageIds: ["m"],
          });
        }
        const rest: string[] = [];
        let token = first.nextPageToken;
        while (token !== "") {
          const page = await receipts.listReadMembers(tenant, serviceCaller, {
            conversationId: "g",
            messageId: "m",
            filter: "unread",
            pageSize: 10,
            pageToken: token,
          });
          rest.push(...page.items.map((m) => m.userId));
          token = page.nextPageToken;
        }
        const seen = [...first.items.map((m) => m.userId), ...rest];
        const unchanged = members.filter((u) => !["u000002", "u000015", "u000029"].includes(u));
        for (const userId of unchanged) expect(seen.filter((u) => u === userId)).toHaveLength(1);
        expect(new Set(seen).size).toBe(seen.length);
      });

      it("defaults the page size to 100 and caps it at 1,000", async () => {
        await groupOf(1_005);
        const page = (pageSize: number) =>
          receipts.listReadMembers(tenant, serviceCaller, {
            conversationId: "g",
            messageId: "m",
            filter: "unread",
            pageSize,
            pageToken: "",
          });
        expect((await page(0)).items).toHaveLength(limits.defaultPageSize);
        const capped = await page(5_000);
        expect(capped.items).toHaveLength(limits.maxPageSize);
        expect(capped.nextPageToken).not.toBe("");
      });

      it("finishes with an empty token on the last page, even when it is full", async () => {
        await groupOf(4);
        const page = await receipts.listReadMembers(tenant, serviceCaller, {
          conversationId: "g",
          messageId: "m",
          filter: "unread",
          pageSize: 4,
          pageToken: "",
        });
        expect(page.items).toHaveLength(4);
        expect(page.nextPageToken).toBe("");
      });

      it("refuses garbage and foreign page tokens, and bad requests", async () => {
        await groupOf(5);
        await receipts.trackMessages(tenant, serviceCaller, [
          groupMessage("m2", "g", "sender", minutes(2)),
        ]);
        const first = await receipts.listReadMembers(tenant, serviceCaller, {
          conversationId: "g",
          messageId: "m",
          filter: "unread",
          pageSize: 2,
          pageToken: "",
        });
        const list = (over: Partial<Parameters<ReceiptService["listReadMembers"]>[2]>) =>
          receipts.listReadMembers(tenant, serviceCaller, {
            conversationId: "g",
            messageId: "m",
            filter: "unread",
            pageSize: 2,
            pageToken: "",
            ...over,
          });
        for (const pageToken of [
          "garbage!",
          "eyJ2IjoxfQ",
          Buffer.from("[]").toString("base64url"),
        ]) {
          await expectReceiptError(list({ pageToken }), "invalid_argument", "page_token");
        }
        await expectReceiptError(
          list({ pageToken: first.nextPageToken, messageId: "m2" }),
          "invalid_argument",
          "page_token",
        );
        await expectReceiptError(
          list({ pageToken: first.nextPageToken, filter: "read" }),
          "invalid_argument",
          "page_token",
        );
        await expectReceiptError(list({ filter: undefined }), "invalid_argument", "filter");
        await expectReceiptError(list({ messageId: "nope" }), "not_found", "message_id");
        await expectReceiptError(
          list({ conversationId: "elsewhere" }),
          "invalid_argument",
          "message_id",
        );
      });
    });

    describe("MarkConversationRead", () => {
      it("marks every message sent at or before read_up_to, and only those", async () => {
        await setUpGroup();
        await receipts.trackMessages(tenant, serviceCaller, [
          groupMessage("m2", "g", "carol", minutes(20)),
          groupMessage("m3", "g", "carol", minutes(30)),
          groupMessage("own", "g", "bob", minutes(15)),
        ]);
        const result = await receipts.markConversationRead(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "bob",
          readUpTo: minutes(20),
        });
        expect(result).toEqual({ readUpTo: minutes(20), markedCount: 2 });
        const got = await receipts.getReceipts(tenant, serviceCaller, {
          conversationId: "g",
          messageIds: ["m1", "m2", "m3", "own"],
        });
        expect(got.map((r) => r.readCount)).toEqual([1, 1, 0, 0]);
      });

      it("counts once with explicit receipts, never moves the horizon back, and defaults to now", async () => {
        await setUpGroup();
        await receipts.sendReceipts(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "bob",
          messageIds: ["m1"],
        });
        const marked = await receipts.markConversationRead(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "bob",
          readUpTo: minutes(50),
        });
        expect(marked.markedCount).toBe(0);
        expect((await receiptOf("g", "m1")).readCount).toBe(1);
        const back = await receipts.markConversationRead(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "bob",
          readUpTo: minutes(5),
        });
        expect(back.readUpTo).toBe(minutes(50));
        const before = Date.now();
        const now = await receipts.markConversationRead(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "bob",
          readUpTo: undefined,
        });
        expect(now.readUpTo).toBeGreaterThanOrEqual(before);
      });

      it("counts a message tracked later but sent before the horizon as read", async () => {
        await setUpGroup();
        await receipts.markConversationRead(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "carol",
          readUpTo: minutes(40),
        });
        await receipts.trackMessages(tenant, serviceCaller, [
          groupMessage("late", "g", "alice", minutes(35)),
          groupMessage("later", "g", "alice", minutes(45)),
        ]);
        const got = await receipts.getReceipts(tenant, serviceCaller, {
          conversationId: "g",
          messageIds: ["late", "later"],
        });
        expect(got.map((r) => r.readCount)).toEqual([1, 0]);
      });

      it("skips messages whose audience the reader was not in", async () => {
        await setUpGroup();
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["erin"],
          joinedAt: minutes(20),
        });
        await receipts.trackMessages(tenant, serviceCaller, [
          groupMessage("m2", "g", "alice", minutes(25)),
        ]);
        const result = await receipts.markConversationRead(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "erin",
          readUpTo: minutes(30),
        });
        expect(result.markedCount).toBe(1);
        expect(await receiptOf("g", "m1")).toMatchObject({ readCount: 0, unreadCount: 3 });
        expect(await receiptOf("g", "m2")).toMatchObject({ readCount: 1, unreadCount: 3 });
      });

      it("works for C2C, for the receiver's messages", async () => {
        await receipts.trackMessages(tenant, serviceCaller, [
          c2cMessage("a1", "dm", "ann", "ben", minutes(1)),
          c2cMessage("b1", "dm", "ben", "ann", minutes(2)),
        ]);
        const result = await receipts.markConversationRead(tenant, serviceCaller, {
          conversationId: "dm",
          readerId: "ben",
          readUpTo: minutes(5),
        });
        expect(result.markedCount).toBe(1);
        expect((await receiptOf("dm", "a1")).receiverRead).toBe(true);
        expect((await receiptOf("dm", "b1")).receiverRead).toBe(false);
        await expectReceiptError(
          receipts.markConversationRead(tenant, serviceCaller, {
            conversationId: "dm",
            readerId: "eve",
            readUpTo: minutes(5),
          }),
          "permission_denied",
          "reader_id",
        );
      });

      it("refuses unknown conversations, strangers, future times and bad ids", async () => {
        await setUpGroup();
        const mark = (conversationId: string, readerId: string, readUpTo?: number) =>
          receipts.markConversationRead(tenant, serviceCaller, {
            conversationId,
            readerId,
            readUpTo,
          });
        await expectReceiptError(mark("nowhere", "bob"), "not_found", "conversation_id");
        await expectReceiptError(mark("g", "stranger"), "permission_denied", "reader_id");
        await expectReceiptError(
          mark("g", "bob", Date.now() + 3_600_000),
          "invalid_argument",
          "read_up_to",
        );
        await expectReceiptError(mark("g", "bob", -5), "invalid_argument", "read_up_to");
        await expectReceiptError(mark("", "bob"), "invalid_argument", "conversation_id");
        await expectReceiptError(mark("g", ""), "invalid_argument", "reader_id");
        expect((await receiptOf("g", "m1")).readCount).toBe(0);
      });
    });

    describe("MembershipService", () => {
      it("adds and removes idempotently and lists current members in pages", async () => {
        const members = users("m", 7);
        expect(
          (
            await membership.addMembers(tenant, serviceCaller, {
              groupId: "g",
              userIds: members,
              joinedAt: t0,
            })
          ).addedCount,
        ).toBe(7);
        expect(
          (
            await membership.addMembers(tenant, serviceCaller, {
              groupId: "g",
              userIds: members,
              joinedAt: minutes(1),
            })
          ).addedCount,
        ).toBe(0);
        expect(
          (
            await membership.removeMembers(tenant, serviceCaller, {
              groupId: "g",
              userIds: ["m000001", "nobody"],
              leftAt: minutes(2),
            })
          ).removedCount,
        ).toBe(1);
        expect(
          (
            await membership.removeMembers(tenant, serviceCaller, {
              groupId: "g",
              userIds: ["m000001"],
              leftAt: minutes(3),
            })
          ).removedCount,
        ).toBe(0);
        const listed: string[] = [];
        let pageToken = "";
        do {
          const page = await membership.listMembers(tenant, serviceCaller, {
            groupId: "g",
            pageSize: 3,
            pageToken,
          });
          listed.push(...page.items.map((m) => m.userId));
          expect(page.items.every((m) => m.joinedAt === t0)).toBe(true);
          pageToken = page.nextPageToken;
        } while (pageToken !== "");
        expect(listed).toEqual(members.filter((m) => m !== "m000001"));
        await expectReceiptError(
          membership.listMembers(tenant, serviceCaller, {
            groupId: "other",
            pageSize: 3,
            pageToken: "nonsense",
          }),
          "invalid_argument",
          "page_token",
        );
      });

      it("lets a user leave and rejoin, with the gap outside the audience", async () => {
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["s", "u"],
          joinedAt: minutes(0),
        });
        await membership.removeMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["u"],
          leftAt: minutes(10),
        });
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["u"],
          joinedAt: minutes(20),
        });
        await receipts.trackMessages(tenant, serviceCaller, [
          groupMessage("before", "g", "s", minutes(5)),
          groupMessage("gap", "g", "s", minutes(15)),
          groupMessage("after", "g", "s", minutes(25)),
        ]);
        const got = await receipts.getReceipts(tenant, serviceCaller, {
          conversationId: "g",
          messageIds: ["before", "gap", "after"],
        });
        expect(got.map((r) => r.unreadCount)).toEqual([1, 0, 1]);
      });

      it("refuses events out of time order for a user", async () => {
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["u"],
          joinedAt: minutes(10),
        });
        await expectReceiptError(
          membership.removeMembers(tenant, serviceCaller, {
            groupId: "g",
            userIds: ["ok", "u"],
            leftAt: minutes(5),
          }),
          "failed_precondition",
          "user_ids[1]",
        );
        await membership.removeMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["u"],
          leftAt: minutes(20),
        });
        await expectReceiptError(
          membership.addMembers(tenant, serviceCaller, {
            groupId: "g",
            userIds: ["u"],
            joinedAt: minutes(15),
          }),
          "failed_precondition",
          "user_ids[0]",
        );
      });

      it("withdraws receipts when a removal is backdated before messages the user read", async () => {
        await setUpGroup();
        await receipts.sendReceipts(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "dave",
          messageIds: ["m1"],
        });
        expect(await receiptOf("g", "m1")).toMatchObject({ readCount: 1, unreadCount: 2 });
        await membership.removeMembers(tenant, serviceCaller, {
          groupId: "g",
          userIds: ["dave"],
          leftAt: minutes(5),
        });
        expect(await receiptOf("g", "m1")).toMatchObject({ readCount: 0, unreadCount: 2 });
      });

      it("validates ids, batch size and C2C ids", async () => {
        await receipts.trackMessages(tenant, serviceCaller, [c2cMessage("d", "dm", "a", "b", t0)]);
        await expectReceiptError(
          membership.addMembers(tenant, serviceCaller, {
            groupId: "",
            userIds: ["u"],
            joinedAt: t0,
          }),
          "invalid_argument",
          "group_id",
        );
        await expectReceiptError(
          membership.addMembers(tenant, serviceCaller, { groupId: "g", userIds: [], joinedAt: t0 }),
          "invalid_argument",
          "user_ids",
        );
        await expectReceiptError(
          membership.addMembers(tenant, serviceCaller, {
            groupId: "g",
            userIds: users("u", limits.maxUsersPerMembershipCall + 1),
            joinedAt: t0,
          }),
          "invalid_argument",
          "user_ids",
        );
        await expectReceiptError(
          membership.addMembers(tenant, serviceCaller, {
            groupId: "g",
            userIds: ["ok", ""],
            joinedAt: t0,
          }),
          "invalid_argument",
          "user_ids[1]",
        );
        await expectReceiptError(
          membership.addMembers(tenant, serviceCaller, {
            groupId: "dm",
            userIds: ["u"],
            joinedAt: t0,
          }),
          "failed_precondition",
          "group_id",
        );
        await expectReceiptError(
          membership.removeMembers(tenant, serviceCaller, {
            groupId: "g",
            userIds: ["u"],
            leftAt: Number.NaN,
          }),
          "invalid_argument",
          "left_at",
        );
        expect(
          (
            await membership.listMembers(tenant, serviceCaller, {
              groupId: "g",
              pageSize: 0,
              pageToken: "",
            })
          ).items,
        ).toEqual([]);
      });
    });

    describe("tenants", () => {
      it("never mix, even with the same ids", async () => {
        await setUpGroup();
        await receipts.sendReceipts(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "bob",
          messageIds: ["m1"],
        });
        const other = `${tenant}-other`;
        await expectReceiptError(
          receipts.getReceipts(other, serviceCaller, { conversationId: "g", messageIds: ["m1"] }),
          "not_found",
        );
        await membership.addMembers(other, serviceCaller, {
          groupId: "g",
          userIds: ["alice", "bob"],
          joinedAt: minutes(0),
        });
        await receipts.trackMessages(other, serviceCaller, [
          groupMessage("m1", "g", "bob", minutes(10)),
        ]);
        const [theirs] = await receipts.getReceipts(other, serviceCaller, {
          conversationId: "g",
          messageIds: ["m1"],
        });
        expect(theirs).toMatchObject({ readCount: 0, unreadCount: 1 });
        expect((await receiptOf("g", "m1")).message.senderId).toBe("alice");
        expect((await receiptOf("g", "m1")).readCount).toBe(1);
      });
    });
  });
}
