import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AccessPolicy } from "../src/domain/access-policy.js";
import { serviceCaller } from "../src/domain/caller.js";
import { MembershipService } from "../src/domain/membership-service.js";
import { isPrivate, type MessageReceipt, type TrackedMessage } from "../src/domain/model.js";
import { PrivacyService } from "../src/domain/privacy-service.js";
import {
  defaultTenantPrivacy,
  ReceiptPrivacy,
  type TenantPrivacy,
} from "../src/domain/receipt-privacy.js";
import { ReceiptService } from "../src/domain/receipt-service.js";
import { ReceiptWatcher } from "../src/domain/receipt-watcher.js";
import type { ContractBackend } from "./store-contract.js";
import { c2cMessage, groupMessage, minutes, t0 } from "./support/fixtures.js";
import { reader } from "./watch-contract.js";

/**
 * The privacy rules of issue #16 against one backend: settings and private reads are stored,
 * private reads are unread to everyone but their reader, the tenant's policy wins, and counts
 * stay exact (read + unread = audience) in every view. Each test works in a fresh tenant.
 */
export function describePrivacyContract(
  backendName: string,
  openBackend: () => Promise<ContractBackend>,
): void {
  describe(`receipt privacy on ${backendName}`, () => {
    let backend: ContractBackend;
    let tenant: string;
    let tenantPrivacy: TenantPrivacy;
    let privacy: ReceiptPrivacy;
    let receipts: ReceiptService;
    let settings: PrivacyService;
    let membership: MembershipService;
    let watcher: ReceiptWatcher;
    let aborts: AbortController[];

    beforeAll(async () => {
      backend = await openBackend();
      membership = new MembershipService(backend);
      watcher = new ReceiptWatcher({
        feed: backend.feed,
        policy: new AccessPolicy({ store: backend.store }),
        heartbeatMs: 60_000,
        bufferLimit: 1_000,
        maxStreams: 100,
      });
    });
    afterAll(async () => {
      watcher?.close();
      await backend?.close();
    });
    beforeEach(async () => {
      tenant = `t-${randomUUID()}`;
      tenantPrivacy = defaultTenantPrivacy;
      aborts = [];
      // A TTL of an hour: a test that sees a new setting sees it through forget(), not expiry.
      privacy = new ReceiptPrivacy({
        store: backend.store,
        privacyOf: () => tenantPrivacy,
        cacheTtlMs: 3_600_000,
      });
      receipts = new ReceiptService({ ...backend, privacy });
      settings = new PrivacyService({ store: backend.store, privacy });
      await membership.addMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: ["alice", "bob", "carol", "dave"],
        joinedAt: t0,
      });
      await receipts.trackMessages(tenant, serviceCaller, [
        groupMessage("m1", "g", "alice", minutes(1)),
        groupMessage("m2", "g", "alice", minutes(2)),
        c2cMessage("c1", "alice-bob", "alice", "bob", minutes(3)),
        c2cMessage("c2", "alice-bob", "bob", "alice", minutes(4)),
      ]);
    });
    afterEach(async () => {
      for (const abort of aborts) abort.abort();
      await receipts.announcer.close();
    });

    const setDefault = (userId: string, visibility: "shared" | "private" | "inherit") =>
      settings.setReceiptSettings(tenant, serviceCaller, {
        userId,
        defaultVisibility: visibility,
        conversations: [],
      });
    const read = (readerId: string, messageIds: string[], conversationId = "g") =>
      receipts.sendReceipts(tenant, serviceCaller, { conversationId, readerId, messageIds });
    const view = async (messageId: string, viewerId?: string, conversationId = "g") => {
      const [receipt] = await receipts.getReceipts(tenant, serviceCaller, {
        conversationId,
        messageIds: [messageId],
        ...(viewerId === undefined ? {} : { viewerId }),
      });
      if (receipt === undefined) throw new Error("no receipt");
      return receipt;
    };
    const counts = (r: MessageReceipt) => [r.readCount, r.unreadCount];
    const listed = async (messageId: string, filter: "read" | "unread") =>
      (
        await receipts.listReadMembers(tenant, serviceCaller, {
          conversationId: "g",
          messageId,
          filter,
          pageSize: 100,
          pageToken: "",
        })
      ).items.map((m) => m.userId);
    const readers = (messageId: string) => listed(messageId, "read");
    const unreaders = (messageId: string) => listed(messageId, "unread");
    const watch = (request: { conversationIds?: string[]; readerId?: string }) => {
      const abort = new AbortController();
      aborts.push(abort);
      return reader(
        watcher.watch(
          tenant,
          serviceCaller,
          { conversationIds: [], senderId: "", resumeToken: "", ...request },
          abort.signal,
        ),
      );
    };

    it("keeps settings: a default, per-conversation overrides, INHERIT removing one", async () => {
      expect(await backend.store.getReceiptSettings(tenant, "bob")).toEqual({
        defaultVisibility: undefined,
        conversations: new Map(),
      });
      const set = await settings.setReceiptSettings(tenant, serviceCaller, {
        userId: "bob",
        defaultVisibility: "private",
        conversations: [
          { conversationId: "g", visibility: "shared" },
          { conversationId: "alice-bob", visibility: "private" },
        ],
      });
      expect(set).toMatchObject({
        defaultVisibility: "private",
        effectiveDefaultVisibility: "private",
        conversations: [
          { conversationId: "alice-bob", visibility: "private" },
          { conversationId: "g", visibility: "shared" },
        ],
      });
      await settings.setReceiptSettings(tenant, serviceCaller, {
        userId: "bob",
        defaultVisibility: "inherit",
        conversations: [{ conversationId: "g", visibility: "inherit" }],
      });
      const got = await settings.getReceiptSettings(tenant, serviceCaller, { userId: "bob" });
      expect(got).toMatchObject({
        defaultVisibility: undefined,
        effectiveDefaultVisibility: "shared",
        conversations: [{ conversationId: "alice-bob", visibility: "private" }],
      });
      // Other users and tenants are untouched.
      expect(
        (await settings.getReceiptSettings(tenant, serviceCaller, { userId: "carol" }))
          .conversations,
      ).toEqual([]);
      expect(
        (await backend.store.getReceiptSettings(`${tenant}-other`, "bob")).conversations.size,
      ).toBe(0);
    });

    it("a private read is unread for everyone else and read in its reader's own view", async () => {
      await setDefault("bob", "private");
      const answered = await read("bob", ["m1"]);
      // The reader's answer is its own view.
      expect(counts(answered[0] as MessageReceipt)).toEqual([1, 2]);
      expect(counts(await view("m1"))).toEqual([0, 3]);
      expect(counts(await view("m1", "alice"))).toEqual([0, 3]);
      expect(counts(await view("m1", "bob"))).toEqual([1, 2]);
      expect(await readers("m1")).toEqual([]);
      expect(await unreaders("m1")).toEqual(["bob", "carol", "dave"]);
      expect(await backend.store.hasRead(tenant, "bob", ["m1"])).toEqual(new Set());
      expect([
        ...(await backend.store.privateReadTimes(tenant, "bob", ["m1", "m2"])).keys(),
      ]).toEqual(["m1"]);
      // A shown read by another is counted beside it, exactly, in both views.
      await read("carol", ["m1"]);
      expect(counts(await view("m1"))).toEqual([1, 2]);
      expect(counts(await view("m1", "bob"))).toEqual([2, 1]);
      expect(await unreaders("m1")).toEqual(["bob", "dave"]);
      // Sent again: still one private read, nothing shown.
      expect(counts((await read("bob", ["m1"]))[0] as MessageReceipt)).toEqual([2, 1]);
      expect(counts(await view("m1"))).toEqual([1, 2]);
    });

    it("C2C: a private read leaves receiver_read unset for the sender, set for the receiver", async () => {
      await setDefault("bob", "private");
      await read("bob", ["c1"], "alice-bob");
      const bySender = await view("c1", "alice", "alice-bob");
      expect(bySender).toMatchObject({ receiverRead: false, readCount: 0, unreadCount: 1 });
      expect(bySender.receiverReadAt).toBeUndefined();
      const own = await view("c1", "bob", "alice-bob");
      expect(own).toMatchObject({ receiverRead: true, readCount: 1, unreadCount: 0 });
      expect(own.receiverReadAt).toBeGreaterThan(0);
    });

    it("publishes a private read only to streams filtered on its reader", async () => {
      await setDefault("bob", "private");
      const conversation = watch({ conversationIds: ["g"] });
      const bobs = watch({ readerId: "bob" });
      const carols = watch({ readerId: "carol" });
      await Promise.all([conversation.first(), bobs.first(), carols.first()]);
      await read("bob", ["m1"]);
      await read("carol", ["m1"]);
      const [own] = await bobs.take(1);
      expect(own?.change).toMatchObject({ kind: "receipt", readerId: "bob", private: true });
      // As bob sees it when he read: his read counted, carol's not yet.
      expect(own?.change.kind === "receipt" && counts(own.change.receipt)).toEqual([1, 2]);
      const [first] = await conversation.take(1);
      expect(first?.change).toMatchObject({ kind: "receipt", readerId: "carol" });
      expect(first?.change.kind === "receipt" && counts(first.change.receipt)).toEqual([1, 2]);
      const [carol] = await carols.take(1);
      expect(carol?.change).toMatchObject({ kind: "receipt", readerId: "carol" });
    });

    it("MarkConversationRead: a private reader's horizon covers its reads, unseen by others", async () => {
      await setDefault("bob", "private");
      const conversation = watch({ conversationIds: ["g"] });
      const bobs = watch({ readerId: "bob" });
      await Promise.all([conversation.first(), bobs.first()]);
      const marked = await receipts.markConversationRead(tenant, serviceCaller, {
        conversationId: "g",
        readerId: "bob",
        readUpTo: minutes(2),
      });
      expect(marked).toEqual({ readUpTo: minutes(2), markedCount: 2 });
      expect((await Promise.all(["m1", "m2"].map((id) => view(id)))).map(counts)).toEqual([
        [0, 3],
        [0, 3],
      ]);
      expect((await Promise.all(["m1", "m2"].map((id) => view(id, "bob")))).map(counts)).toEqual([
        [1, 2],
        [1, 2],
      ]);
      // A message tracked later under the horizon is a private read too.
      await receipts.trackMessages(tenant, serviceCaller, [
        groupMessage("m0", "g", "carol", minutes(0)),
      ]);
      expect(counts(await view("m0"))).toEqual([0, 3]);
      expect(counts(await view("m0", "bob"))).toEqual([1, 2]);
      const own = await bobs.take(3);
      expect(own.map((e) => e.change.kind)).toEqual(["receipt", "receipt", "horizon"]);
      expect(own.every((e) => isPrivate(e.change))).toBe(true);
      // Others see carol's read and nothing of bob's.
      await read("carol", ["m1"]);
      const [first] = await conversation.take(1);
      expect(first?.change).toMatchObject({ kind: "receipt", readerId: "carol" });
    });

    it("'always' shows every read whatever the setting; 'never' hides every read", async () => {
      await setDefault("bob", "private");
      tenantPrivacy = { ...defaultTenantPrivacy, policy: { c2c: "never", group: "always" } };
      await read("bob", ["m1"]);
      expect(counts(await view("m1"))).toEqual([1, 2]);
      expect(await readers("m1")).toEqual(["bob"]);
      // alice shares, but in C2C nobody's reads are shown.
      await read("bob", ["c1"], "alice-bob");
      await read("alice", ["c2"], "alice-bob");
      expect(await view("c1", "alice", "alice-bob")).toMatchObject({ receiverRead: false });
      expect(await view("c2", "bob", "alice-bob")).toMatchObject({ receiverRead: false });
      expect(await view("c1", "bob", "alice-bob")).toMatchObject({ receiverRead: true });
    });

    it("a per-conversation setting beats the user's default, both ways", async () => {
      await settings.setReceiptSettings(tenant, serviceCaller, {
        userId: "bob",
        defaultVisibility: "private",
        conversations: [{ conversationId: "g", visibility: "shared" }],
      });
      await settings.setReceiptSettings(tenant, serviceCaller, {
        userId: "carol",
        defaultVisibility: "shared",
        conversations: [{ conversationId: "g", visibility: "private" }],
      });
      await read("bob", ["m1"]);
      await read("carol", ["m1"]);
      expect(await readers("m1")).toEqual(["bob"]);
      await read("bob", ["c1"], "alice-bob");
      expect(await view("c1", "alice", "alice-bob")).toMatchObject({ receiverRead: false });
    });

    it("the tenant's default applies to users without a setting", async () => {
      tenantPrivacy = { ...defaultTenantPrivacy, defaultVisibility: "private" };
      await setDefault("carol", "shared");
      await read("bob", ["m1"]);
      await read("carol", ["m1"]);
      expect(await readers("m1")).toEqual(["carol"]);
      expect(
        (await settings.getReceiptSettings(tenant, serviceCaller, { userId: "bob" }))
          .effectiveDefaultVisibility,
      ).toBe("private");
    });

    it("a change of setting applies from then on: a read shown before stays shown", async () => {
      await read("bob", ["m1"]);
      await setDefault("bob", "private");
      await read("bob", ["m1", "m2"]);
      expect(await readers("m1")).toEqual(["bob"]);
      expect(await readers("m2")).toEqual([]);
      expect(counts(await view("m1", "bob"))).toEqual([1, 2]);
      expect(counts(await view("m2", "bob"))).toEqual([1, 2]);
      // Back to shared: m2 stays private until read again, which shows it, counted once.
      await setDefault("bob", "shared");
      expect(await readers("m2")).toEqual([]);
      await read("bob", ["m2"]);
      expect(await readers("m2")).toEqual(["bob"]);
      expect(counts(await view("m2", "bob"))).toEqual([1, 2]);
      expect(counts(await view("m2"))).toEqual([1, 2]);
    });

    it("reciprocity: in C2C a user who hides its reads sees none of the other's", async () => {
      tenantPrivacy = { ...defaultTenantPrivacy, reciprocalC2c: true };
      await setDefault("alice", "private");
      await read("bob", ["c1"], "alice-bob");
      const hidden = await view("c1", "alice", "alice-bob");
      expect(hidden).toMatchObject({ receiverRead: false, readCount: 0, unreadCount: 1 });
      expect(hidden.receiverReadAt).toBeUndefined();
      // Everyone else (the service's shared view, bob) still sees bob's shown read.
      expect(await view("c1", undefined, "alice-bob")).toMatchObject({ receiverRead: true });
      expect(await view("c1", "bob", "alice-bob")).toMatchObject({ receiverRead: true });
      // Not reciprocal: alice sees it.
      tenantPrivacy = defaultTenantPrivacy;
      expect(await view("c1", "alice", "alice-bob")).toMatchObject({ receiverRead: true });
    });

    it("stores private reads idempotently, lists them by message id, and erases a user's privacy", async () => {
      const message = (messageId: string): TrackedMessage => ({
        conversationId: "g",
        conversationType: "group",
        messageId,
        senderId: "alice",
        sentAt: minutes(1),
        receiverId: "",
      });
      const first = await backend.store.insertPrivateReceipts(tenant, "bob", [
        { message: message("m2"), readAt: minutes(5) },
        { message: message("m1"), readAt: minutes(6) },
      ]);
      expect(first).toEqual([true, true]);
      const again = await backend.store.insertPrivateReceipts(tenant, "bob", [
        { message: message("m1"), readAt: minutes(9) },
      ]);
      expect(again).toEqual([false]);
      expect(await backend.store.privateReadTimes(tenant, "bob", ["m1", "m2", "m3"])).toEqual(
        new Map([
          ["m1", minutes(6)],
          ["m2", minutes(5)],
        ]),
      );
      expect(await backend.store.listPrivateReceipts(tenant, "bob", undefined, 1)).toEqual([
        { messageId: "m1", conversationId: "g", readAt: minutes(6) },
      ]);
      expect(await backend.store.listPrivateReceipts(tenant, "bob", "m1", 10)).toEqual([
        { messageId: "m2", conversationId: "g", readAt: minutes(5) },
      ]);
      await setDefault("bob", "private");
      await setDefault("carol", "private");
      expect(await backend.store.eraseUserPrivacy(tenant, "bob")).toEqual({
        settings: 1,
        privateReceipts: 2,
      });
      expect(await backend.store.privateReadTimes(tenant, "bob", ["m1", "m2"])).toEqual(new Map());
      expect(
        (await backend.store.getReceiptSettings(tenant, "bob")).defaultVisibility,
      ).toBeUndefined();
      expect((await backend.store.getReceiptSettings(tenant, "carol")).defaultVisibility).toBe(
        "private",
      );
      expect(await backend.store.eraseUserPrivacy(tenant, "bob")).toEqual({
        settings: 0,
        privateReceipts: 0,
      });
    });

    it("deletes the private reads of deleted messages, every reader's, and only theirs", async () => {
      await setDefault("bob", "private");
      await setDefault("carol", "private");
      await read("bob", ["m1", "m2"]);
      await read("carol", ["m1"]);
      await read("dave", ["m1"]);
      expect(await backend.store.deletePrivateReceiptsOf(tenant, ["m1", "nope"])).toBe(2);
      expect([
        ...(await backend.store.privateReadTimes(tenant, "bob", ["m1", "m2"])).keys(),
      ]).toEqual(["m2"]);
      expect((await backend.store.privateReadTimes(tenant, "carol", ["m1"])).size).toBe(0);
      // Shown reads are not the privacy store's.
      expect(await readers("m1")).toEqual(["dave"]);
      // Again: nothing left, nothing removed.
      expect(await backend.store.deletePrivateReceiptsOf(tenant, ["m1"])).toBe(0);
    });
  });
}
