import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { serviceCaller } from "../src/domain/caller.js";
import { ChangeAnnouncer } from "../src/domain/change-announcer.js";
import { MembershipService } from "../src/domain/membership-service.js";
import { MessageDeletion } from "../src/domain/message-deletion.js";
import type { PositionedChange } from "../src/domain/model.js";
import { ReceiptService } from "../src/domain/receipt-service.js";
import type { ContractBackend } from "./store-contract.js";
import { expectReceiptError, groupMessage, minutes, users } from "./support/fixtures.js";

export interface LifecycleBackend extends ContractBackend {
  /** Runs the backend's retention job, if it has one (the embedded store); Cassandra expires by TTL. */
  readonly prune?: () => Promise<unknown>;
  /** Receipt rows the backend keeps beside those hasRead reads (Cassandra's per-reader records). */
  readonly otherReceiptRows?: (
    tenant: string,
    conversationId: string,
    readerIds: readonly string[],
  ) => Promise<number>;
}

/**
 * DeleteMessages and retention (issue #16), run against one backend: every rule holds on both
 * stores. Each test works in a fresh tenant.
 */
export function describeLifecycleContract(
  backendName: string,
  openBackend: () => Promise<LifecycleBackend>,
): void {
  describe(`message deletion and retention on ${backendName}`, () => {
    let backend: LifecycleBackend;
    let receipts: ReceiptService;
    let membership: MembershipService;
    let deletion: MessageDeletion;
    let tenant: string;

    beforeAll(async () => {
      backend = await openBackend();
      receipts = new ReceiptService(backend);
      membership = new MembershipService(backend);
      deletion = new MessageDeletion({ store: backend.store, announcer: receipts.announcer });
    });
    afterAll(async () => {
      await receipts?.announcer.close();
      await backend?.close();
    });
    beforeEach(() => {
      tenant = `t-${randomUUID()}`;
    });

    const readers = users("r", 30);
    const setUpGroup = async (messageIds: readonly string[]) => {
      await membership.addMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: ["alice", ...readers],
        joinedAt: minutes(0),
      });
      await receipts.trackMessages(
        tenant,
        serviceCaller,
        messageIds.map((id, i) => groupMessage(id, "g", "alice", minutes(10 + i))),
      );
    };
    const read = (readerId: string, messageIds: string[]) =>
      receipts.sendReceipts(tenant, serviceCaller, { conversationId: "g", readerId, messageIds });
    const logged = async (): Promise<PositionedChange[]> => {
      await receipts.announcer.idle();
      return backend.feed.readAfter(tenant, "0", 1_000);
    };
    const loggedAfter = async (position: string): Promise<PositionedChange[]> => {
      await receipts.announcer.idle();
      return backend.feed.readAfter(tenant, position, 1_000);
    };

    it("deletes a message with its receipts: later calls about it are NOT_FOUND", async () => {
      await setUpGroup(["m1", "m2"]);
      await read("r000000", ["m1", "m2"]);
      await read("r000001", ["m1"]);
      const answer = await deletion.deleteMessages(tenant, serviceCaller, {
        conversationId: "g",
        messageIds: ["m1"],
      });
      expect(answer).toEqual({ deletedCount: 1 });
      await expectReceiptError(
        receipts.getReceipts(tenant, serviceCaller, { conversationId: "g", messageIds: ["m1"] }),
        "not_found",
        "message_ids[0]",
      );
      await expectReceiptError(read("r000002", ["m2", "m1"]), "not_found", "message_ids[1]");
      await expectReceiptError(
        receipts.listReadMembers(tenant, serviceCaller, {
          conversationId: "g",
          messageId: "m1",
          filter: "read",
          pageSize: 10,
          pageToken: "",
        }),
        "not_found",
        "message_id",
      );
      // Nothing of it is left in the store; the other message is untouched.
      const [m1] = (await backend.store.deletedMessages(tenant, ["m1"])).values();
      expect(m1?.messageId).toBe("m1");
      expect(await backend.store.hasRead(tenant, "r000000", ["m1", "m2"])).toEqual(new Set(["m2"]));
      if (m1 !== undefined) {
        expect(await backend.store.readCounts(tenant, [m1])).toEqual(new Map([["m1", 0]]));
        expect(await backend.store.listReaders(tenant, m1, undefined, 10)).toEqual([]);
      }
      const [m2] = await receipts.getReceipts(tenant, serviceCaller, {
        conversationId: "g",
        messageIds: ["m2"],
      });
      expect(m2?.readCount).toBe(1);
    });

    it("is a no-op for unknown and already deleted ids, and says how many it deleted", async () => {
      await setUpGroup(["m1", "m2"]);
      const request = { conversationId: "g", messageIds: ["m1", "nope", "m1"] };
      expect(await deletion.deleteMessages(tenant, serviceCaller, request)).toEqual({
        deletedCount: 1,
      });
      expect(await deletion.deleteMessages(tenant, serviceCaller, request)).toEqual({
        deletedCount: 0,
      });
      const deletions = (await logged()).filter((c) => c.change.kind === "deletion");
      expect(deletions).toHaveLength(1);
    });

    it("never tracks a deleted id again", async () => {
      await setUpGroup(["m1"]);
      await deletion.deleteMessages(tenant, serviceCaller, {
        conversationId: "g",
        messageIds: ["m1"],
      });
      const again = await receipts.trackMessages(tenant, serviceCaller, [
        groupMessage("m1", "g", "alice", minutes(10)),
      ]);
      expect(again.trackedCount).toBe(0);
      await expectReceiptError(
        receipts.getReceipts(tenant, serviceCaller, { conversationId: "g", messageIds: ["m1"] }),
        "not_found",
      );
    });

    it("refuses an id of another conversation and deletes nothing", async () => {
      await setUpGroup(["m1"]);
      await membership.addMembers(tenant, serviceCaller, {
        groupId: "h",
        userIds: ["bob"],
        joinedAt: minutes(0),
      });
      await receipts.trackMessages(tenant, serviceCaller, [
        groupMessage("h1", "h", "bob", minutes(10)),
      ]);
      await expectReceiptError(
        deletion.deleteMessages(tenant, serviceCaller, {
          conversationId: "g",
          messageIds: ["m1", "h1"],
        }),
        "invalid_argument",
        "message_ids[1]",
      );
      const found = await receipts.getReceipts(tenant, serviceCaller, {
        conversationId: "g",
        messageIds: ["m1"],
      });
      expect(found).toHaveLength(1);
    });

    it("validates the request: 1 to 100 ids, the conversation named", async () => {
      await expectReceiptError(
        deletion.deleteMessages(tenant, serviceCaller, { conversationId: "g", messageIds: [] }),
        "invalid_argument",
        "message_ids",
      );
      await expectReceiptError(
        deletion.deleteMessages(tenant, serviceCaller, {
          conversationId: "g",
          messageIds: users("m", 101),
        }),
        "invalid_argument",
        "message_ids",
      );
      await expectReceiptError(
        deletion.deleteMessages(tenant, serviceCaller, { conversationId: "", messageIds: ["m1"] }),
        "invalid_argument",
        "conversation_id",
      );
    });

    it("logs one message_deleted change and removes the message's receipts from the log", async () => {
      await setUpGroup(["m1", "m2"]);
      await read("r000000", ["m1", "m2"]);
      const before = await logged();
      expect(before.filter((c) => c.change.kind === "receipt")).toHaveLength(2);
      await deletion.deleteMessages(tenant, serviceCaller, {
        conversationId: "g",
        messageIds: ["m1"],
      });
      const after = await logged();
      const messageIdsOf = (c: PositionedChange) =>
        c.change.kind === "receipt"
          ? [c.change.receipt.message.messageId]
          : c.change.kind === "deletion"
            ? c.change.messages.map((m) => m.messageId)
            : [];
      expect(after.map((c) => [c.change.kind, messageIdsOf(c)])).toEqual([
        ["receipt", ["m2"]],
        ["deletion", ["m1"]],
      ]);
      const deleted = after.at(-1)?.change;
      expect(deleted).toMatchObject({
        kind: "deletion",
        conversationId: "g",
        messages: [{ messageId: "m1", senderId: "alice" }],
      });
    });

    it("announces a deletion whose publish was lost through the outbox sweep", async () => {
      await setUpGroup(["m1"]);
      const head = await backend.feed.head(tenant);
      // A deletion whose own announcement failed (the change log unreachable at that moment).
      const unreachable = Object.create(backend.feed) as typeof backend.feed;
      unreachable.publish = () => Promise.reject(new Error("change log unreachable"));
      const failing = new ChangeAnnouncer({
        store: backend.store,
        feed: unreachable,
        describe: async () => [],
      });
      const silent = new MessageDeletion({ store: backend.store, announcer: failing });
      await silent.deleteMessages(tenant, serviceCaller, {
        conversationId: "g",
        messageIds: ["m1"],
      });
      await failing.idle();
      expect(await loggedAfter(head)).toEqual([]);
      const sweeper = new ReceiptService({ ...backend, announce: { graceMs: 0 } });
      while ((await loggedAfter(head)).length === 0) await sweeper.announcer.sweep();
      const [change] = await loggedAfter(head);
      expect(change?.change).toMatchObject({ kind: "deletion", messages: [{ messageId: "m1" }] });
    });

    it("leaves nothing counted or stored when receipts race the deletion", async () => {
      const ids = users("m", 20);
      await setUpGroup(ids);
      // Each message is deleted once a few of its receipts are in, while the others are on the way.
      const perMessage = ids.map(async (id) => {
        let answered = 0;
        let startDeletion = () => {};
        const started = new Promise<void>((resolve) => {
          startDeletion = resolve;
        });
        const sends = readers.map((reader, i) =>
          turns(i)
            .then(() => read(reader, [id]))
            .then(
              () => "ok",
              (error: unknown) => error,
            )
            .finally(() => {
              if (++answered === 3) startDeletion();
            }),
        );
        await started;
        const deleted = await deletion.deleteMessages(tenant, serviceCaller, {
          conversationId: "g",
          messageIds: [id],
        });
        return { deleted, outcomes: await Promise.all(sends) };
      });
      const results = await Promise.all(perMessage);
      expect(results.map((r) => r.deleted.deletedCount)).toEqual(ids.map(() => 1));
      const outcomes = results.flatMap((r) => r.outcomes);
      for (const outcome of outcomes) {
        if (outcome !== "ok") await expectReceiptError(Promise.reject(outcome), "not_found");
      }
      // Both sides of the race happened: receipts stored before the deletion, and refused after.
      expect(outcomes.filter((o) => o === "ok").length).toBeGreaterThan(0);
      expect(outcomes.filter((o) => o !== "ok").length).toBeGreaterThan(0);
      await receipts.announcer.idle();
      const markers = await backend.store.deletedMessages(tenant, ids);
      expect(markers.size).toBe(ids.length);
      for (const reader of readers) {
        expect(await backend.store.hasRead(tenant, reader, ids)).toEqual(new Set());
      }
      expect((await backend.otherReceiptRows?.(tenant, "g", readers)) ?? 0).toBe(0);
      const counts = await backend.store.readCounts(tenant, [...markers.values()]);
      expect([...counts.values()]).toEqual(ids.map(() => 0));
      const afterwards = await logged();
      expect(afterwards.filter((c) => c.change.kind === "receipt")).toEqual([]);
    });

    it("retention removes exactly the messages sent before now minus the retention", async () => {
      const retentionMs = 4_000;
      const withRetention = new ReceiptService({ ...backend, retentionOf: () => retentionMs });
      await membership.addMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: readers,
        joinedAt: 0,
      });
      const start = Date.now();
      await withRetention.trackMessages(tenant, serviceCaller, [
        groupMessage("old", "g", "r000000", start - 2_000),
        groupMessage("new", "g", "r000000", start),
      ]);
      await withRetention.sendReceipts(tenant, serviceCaller, {
        conversationId: "g",
        readerId: "r000001",
        messageIds: ["old", "new"],
      });
      await expectReceiptError(
        withRetention.trackMessages(tenant, serviceCaller, [
          groupMessage("older", "g", "r000000", start - 4_001),
        ]),
        "failed_precondition",
        "messages[0].sent_at",
      );
      await sleepUntil(start + 2_600);
      await backend.prune?.();
      await expectReceiptError(
        withRetention.getReceipts(tenant, serviceCaller, {
          conversationId: "g",
          messageIds: ["old"],
        }),
        "not_found",
      );
      const [kept] = await withRetention.getReceipts(tenant, serviceCaller, {
        conversationId: "g",
        messageIds: ["new"],
      });
      expect(kept?.readCount).toBe(1);
      expect(await backend.store.hasRead(tenant, "r000001", ["old", "new"])).toEqual(
        new Set(["new"]),
      );
      await withRetention.announcer.close();
    });
  });
}

const sleepUntil = (at: number) =>
  new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())));

/** Resolves after `n` turns of the event loop: calls started apart land in different batches. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}
