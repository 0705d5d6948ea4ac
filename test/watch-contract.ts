import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { AccessPolicy } from "../src/domain/access-policy.js";
import { serviceCaller } from "../src/domain/caller.js";
import { StoreUnavailableError } from "../src/domain/errors.js";
import { MembershipService } from "../src/domain/membership-service.js";
import { isPrivate, type ReceiptChange, type TrackedMessage } from "../src/domain/model.js";
import { ReceiptPrivacy } from "../src/domain/receipt-privacy.js";
import { ReceiptService } from "../src/domain/receipt-service.js";
import {
  encodeResumeToken,
  ReceiptWatcher,
  type WatchEvent,
  type WatcherOptions,
} from "../src/domain/receipt-watcher.js";
import type { ChangeFeed } from "../src/store/change-feed.js";
import type { ReceiptStore } from "../src/store/receipt-store.js";
import { expectReceiptError, groupMessage, minutes, t0, users } from "./support/fixtures.js";

export interface WatchBackend {
  readonly store: ReceiptStore;
  readonly feed: ChangeFeed;
  /** A well-formed position after every position this feed will issue during the test. */
  readonly aheadPosition: string;
  /**
   * Drops every change of the tenant logged so far, as the retention window passing would
   * (the feed may log changes of its own doing so); changes published afterwards are kept.
   */
  expire(tenant: string): Promise<void>;
  close(): Promise<void>;
}

/** Reads a watch stream: `take(n)` resolves the next n non-heartbeat events. */
export function reader(events: AsyncGenerator<WatchEvent>) {
  return {
    async first(): Promise<WatchEvent> {
      const next = await events.next();
      if (next.done) throw new Error("stream ended");
      return next.value;
    },
    async take(count: number): Promise<Extract<WatchEvent, { kind: "change" }>[]> {
      const taken: Extract<WatchEvent, { kind: "change" }>[] = [];
      while (taken.length < count) {
        const next = await events.next();
        if (next.done) throw new Error("stream ended");
        if (next.value.kind === "change") taken.push(next.value);
      }
      return taken;
    },
  };
}

/**
 * The WatchReceipts rules, run against one change feed. Each test works in a
 * fresh tenant, so feeds may share one database or Redis between tests.
 */
export function describeWatchContract(
  feedName: string,
  openBackend: () => Promise<WatchBackend>,
): void {
  describe(`WatchReceipts on ${feedName}`, () => {
    let backend: WatchBackend;
    let receipts: ReceiptService;
    let watchers: ReceiptWatcher[];
    let aborts: AbortController[];
    let tenant: string;

    const watcher = (options: Partial<WatcherOptions> = {}) => {
      const created = new ReceiptWatcher({
        feed: backend.feed,
        policy: new AccessPolicy({ store: backend.store }),
        heartbeatMs: 60_000,
        bufferLimit: 1_000,
        maxStreams: 10_000,
        ...options,
      });
      watchers.push(created);
      return created;
    };
    const watch = (
      w: ReceiptWatcher,
      request: Partial<Parameters<ReceiptWatcher["watch"]>[2]> = {},
    ) => {
      const abort = new AbortController();
      aborts.push(abort);
      return w.watch(
        tenant,
        serviceCaller,
        { conversationIds: [], senderId: "", resumeToken: "", ...request },
        abort.signal,
      );
    };
    const read = (messageId: string, readerId: string, conversationId = "g") =>
      receipts.sendReceipts(tenant, serviceCaller, {
        conversationId,
        readerId,
        messageIds: [messageId],
      });

    beforeAll(async () => {
      backend = await openBackend();
      receipts = new ReceiptService(backend);
    });
    afterAll(async () => {
      await receipts?.announcer.close();
      await backend?.close();
    });
    beforeEach(async () => {
      tenant = `t-${randomUUID()}`;
      watchers = [];
      aborts = [];
      const membership = new MembershipService(backend);
      for (const groupId of ["g", "h"]) {
        await membership.addMembers(tenant, serviceCaller, {
          groupId,
          userIds: ["alice", "bob", ...users("r", 30)],
          joinedAt: t0,
        });
      }
      await receipts.trackMessages(tenant, serviceCaller, [
        groupMessage("m1", "g", "alice", minutes(1)),
        groupMessage("m2", "g", "bob", minutes(2)),
        groupMessage("h1", "h", "alice", minutes(3)),
      ]);
    });
    afterEach(() => {
      for (const abort of aborts) abort.abort();
    });

    it("opens with a heartbeat carrying a resume token, then streams matching changes with their counts", async () => {
      const stream = reader(watch(watcher(), { conversationIds: ["g"] }));
      const opened = await stream.first();
      expect(opened.kind).toBe("heartbeat");
      expect(opened.resumeToken).not.toBe("");
      await read("h1", "bob", "h");
      await read("m1", "bob");
      const [update] = await stream.take(1);
      expect(update?.change).toMatchObject({
        kind: "receipt",
        readerId: "bob",
        receipt: { readCount: 1, unreadCount: 30, message: { messageId: "m1" } },
      });
    });

    it("filters by sender across conversations, and sends everything of the tenant without a filter", async () => {
      const w = watcher();
      const bySender = reader(watch(w, { senderId: "alice" }));
      const everything = reader(watch(w));
      await bySender.first();
      await everything.first();
      await read("m2", "alice");
      await read("h1", "bob", "h");
      await read("m1", "bob");
      await receipts.markConversationRead(tenant, serviceCaller, {
        conversationId: "g",
        readerId: "r000001",
        readUpTo: minutes(1),
      });
      const mine = await bySender.take(3);
      expect(
        mine.map((e) => e.change.kind === "receipt" && e.change.receipt.message.messageId),
      ).toEqual(["h1", "m1", "m1"]);
      const all = await everything.take(5);
      expect(all.map((e) => e.change.kind)).toEqual([
        "receipt",
        "receipt",
        "receipt",
        "receipt",
        "horizon",
      ]);
    });

    it("carries a private read to its reader's streams only, and a later shown read of it to all", async () => {
      const privacy = new ReceiptPrivacy({ store: backend.store });
      const deciding = new ReceiptService({ ...backend, privacy });
      try {
        const w = watcher();
        const conversation = reader(watch(w, { conversationIds: ["g"] }));
        const bobs = reader(watch(w, { readerId: "bob" }));
        await Promise.all([conversation.first(), bobs.first()]);
        const setBob = async (visibility: "private" | "shared") => {
          await backend.store.putReceiptSettings(tenant, "bob", [
            { conversationId: "", visibility },
          ]);
          privacy.forget(tenant, "bob");
        };
        const bobReads = () =>
          deciding.sendReceipts(tenant, serviceCaller, {
            conversationId: "g",
            readerId: "bob",
            messageIds: ["m1"],
          });
        await setBob("private");
        await bobReads();
        await setBob("shared");
        await bobReads();
        const own = await bobs.take(2);
        expect(
          own.map((e) => [
            isPrivate(e.change),
            e.change.kind === "receipt" && e.change.receipt.readCount,
          ]),
        ).toEqual([
          [true, 1],
          [false, 1],
        ]);
        const [shown] = await conversation.take(1);
        expect(shown?.change).toMatchObject({
          kind: "receipt",
          readerId: "bob",
          receipt: { readCount: 1 },
        });
        expect(shown !== undefined && isPrivate(shown.change)).toBe(false);
      } finally {
        await deciding.announcer.close();
      }
    });

    it("resumes after a disconnect with exactly the missed updates, in order, then live ones", async () => {
      const w = watcher();
      const firstConnection = watch(w, { conversationIds: ["g"] });
      const first = reader(firstConnection);
      await first.first();
      await read("m1", "r000000");
      const [seen] = await first.take(1);
      await firstConnection.return(undefined);

      for (const readerId of ["r000001", "r000002", "r000003"]) await read("m1", readerId);
      await read("h1", "r000004", "h");

      const resumed = reader(
        watch(w, { conversationIds: ["g"], resumeToken: seen?.resumeToken ?? "" }),
      );
      const missed = await resumed.take(3);
      expect(missed.map((e) => e.change.kind === "receipt" && e.change.readerId)).toEqual([
        "r000001",
        "r000002",
        "r000003",
      ]);
      expect(missed.map((e) => e.change.kind === "receipt" && e.change.receipt.readCount)).toEqual([
        2, 3, 4,
      ]);
      await read("m1", "r000005");
      const [live] = await resumed.take(1);
      expect(live?.change.kind === "receipt" && live.change.readerId).toBe("r000005");
      expect(new Set([...missed, live].map((e) => e?.resumeToken)).size).toBe(4);
    });

    it("ends a consumer that cannot keep up with RESOURCE_EXHAUSTED and a resume token, leaving others alone", async () => {
      const w = watcher({ bufferLimit: 5 });
      const slowEvents = watch(w, { conversationIds: ["g"] });
      const slow = reader(slowEvents);
      const fast = reader(watch(w, { conversationIds: ["g"] }));
      await slow.first();
      await fast.first();
      const readers = users("r", 12);
      // The fast consumer reads each update as it comes (sending does not wait for the log).
      const fastGot: Extract<WatchEvent, { kind: "change" }>[] = [];
      for (const readerId of readers) {
        await read("m1", readerId);
        fastGot.push(...(await fast.take(1)));
      }
      expect(fastGot.map((e) => e.change.kind === "receipt" && e.change.readerId)).toEqual(readers);
      const error = await expectReceiptError(slow.take(12), "resource_exhausted");
      const token = error.meta?.["resume-token"];
      expect(token).toBeDefined();
      const caughtUp = reader(watch(w, { conversationIds: ["g"], resumeToken: token ?? "" }));
      expect(
        (await caughtUp.take(12)).map((e) => e.change.kind === "receipt" && e.change.readerId),
      ).toEqual(readers);
    });

    it("refuses a token older than the retention window with OUT_OF_RANGE", async () => {
      const w = watcher();
      const stream = reader(watch(w, { conversationIds: ["g"] }));
      const { resumeToken } = await stream.first();
      await read("m1", "r000000");
      const [kept] = await stream.take(1);
      await backend.expire(tenant);
      await read("m1", "r000001");
      await expectReceiptError(
        reader(watch(w, { resumeToken })).first(),
        "out_of_range",
        "resume_token",
      );
      // The newest expired change still marks a valid token: nothing after it was dropped.
      const resumed = reader(
        watch(w, { conversationIds: ["g"], resumeToken: kept?.resumeToken ?? "" }),
      );
      const [after] = await resumed.take(1);
      expect(after?.change.kind === "receipt" && after.change.readerId).toBe("r000001");
    });

    it("refuses malformed requests with INVALID_ARGUMENT", async () => {
      const w = watcher();
      await expectReceiptError(
        reader(watch(w, { resumeToken: "garbage" })).first(),
        "invalid_argument",
        "resume_token",
      );
      const ahead = encodeResumeToken(tenant, backend.aheadPosition);
      await expectReceiptError(
        reader(watch(w, { resumeToken: ahead })).first(),
        "invalid_argument",
        "resume_token",
      );
      await expectReceiptError(
        reader(watch(w, { conversationIds: users("c", 101) })).first(),
        "invalid_argument",
        "conversation_ids",
      );
      await expectReceiptError(
        reader(watch(w, { conversationIds: ["ok", ""] })).first(),
        "invalid_argument",
        "conversation_ids[1]",
      );
    });

    it("sends heartbeats on idle streams", async () => {
      const stream = reader(watch(watcher({ heartbeatMs: 20 }), { conversationIds: ["g"] }));
      const beats = [await stream.first(), await stream.first(), await stream.first()];
      expect(beats.map((b) => b.kind)).toEqual(["heartbeat", "heartbeat", "heartbeat"]);
    });

    it("ends streams with UNAVAILABLE and a resume token on shutdown, and refuses new ones", async () => {
      const w = watcher();
      const stream = reader(watch(w, { conversationIds: ["g"] }));
      await stream.first();
      await read("m1", "r000000");
      const [seen] = await stream.take(1);
      w.close();
      const error = await expectReceiptError(stream.first(), "unavailable");
      expect(error.meta?.["resume-token"]).toBe(seen?.resumeToken);
      await expectReceiptError(reader(watch(w)).first(), "unavailable");
    });

    it("caps the streams open on one instance", async () => {
      const w = watcher({ maxStreams: 2 });
      await reader(watch(w)).first();
      await reader(watch(w)).first();
      await expectReceiptError(reader(watch(w)).first(), "resource_exhausted");
      expect(w.openStreams).toBe(2);
    });

    it("counts positions per tenant: another tenant's traffic moves neither heads nor heartbeat tokens", async () => {
      const other = `t-${randomUUID()}`;
      const w = watcher();
      const before = await reader(watch(w)).first();
      const head = await backend.feed.head(tenant);
      await backend.feed.publish(
        other,
        users("r", 3).map((readerId, i) => horizonChange("g", readerId, i + 1)),
      );
      expect(await backend.feed.head(tenant)).toBe(head);
      const after = await reader(watch(w)).first();
      expect(after.resumeToken).toBe(before.resumeToken);
    });

    it("takes a token only in the tenant it was issued to, saying no more of it than of garbage", async () => {
      const other = `t-${randomUUID()}`;
      await backend.feed.publish(other, [horizonChange("g", "r000000", 1)]);
      const abort = new AbortController();
      aborts.push(abort);
      const foreign = await reader(
        watcher().watch(
          other,
          serviceCaller,
          { conversationIds: [], senderId: "", resumeToken: "" },
          abort.signal,
        ),
      ).first();
      const refused = await expectReceiptError(
        reader(watch(watcher(), { resumeToken: foreign.resumeToken })).first(),
        "invalid_argument",
        "resume_token",
      );
      const garbage = await expectReceiptError(
        reader(watch(watcher(), { resumeToken: "garbage" })).first(),
        "invalid_argument",
        "resume_token",
      );
      expect(refused.message).toBe(garbage.message);
      // Tokens of version 1 named positions shared by all tenants: answered as expired.
      const version1 = Buffer.from("rt1:1").toString("base64url");
      await expectReceiptError(
        reader(watch(watcher(), { resumeToken: version1 })).first(),
        "out_of_range",
        "resume_token",
      );
    });

    it("logs each receipt once and never lowers a message's count, whatever order publishes come in", async () => {
      const message = groupMessage("m1", "g", "alice", minutes(1));
      const receipt = (readerId: string, readCount: number): ReceiptChange => ({
        kind: "receipt",
        receipt: {
          message: message as TrackedMessage,
          readCount,
          unreadCount: 31 - readCount,
          receiverRead: false,
        },
        readerId,
        readAt: minutes(5),
      });
      const head = await backend.feed.head(tenant);
      // Two instances: r1's change (count 3) lands before r2's (count 2), then r1 is sent again.
      await backend.feed.publish(tenant, [receipt("r1", 3)]);
      await backend.feed.publish(tenant, [receipt("r2", 2), receipt("r1", 3)]);
      const logged = await backend.feed.readAfter(tenant, head, 10);
      expect(logged.map((p) => p.change)).toEqual([receipt("r1", 3), receipt("r2", 3)]);
      // Once a receipt is withdrawn, the count may go down and the reader be logged again.
      await backend.feed.forgetReceipts(tenant, [{ messageId: "m1", readerId: "r1" }]);
      const again = await backend.feed.publish(tenant, [receipt("r1", 2)]);
      expect(again.map((p) => p.change)).toEqual([receipt("r1", 2)]);
    });

    it("logs a message's deletion once, takes its receipts out of the log, and logs none of it after", async () => {
      const receiptOf = (messageId: string, readerId: string): ReceiptChange => ({
        kind: "receipt",
        receipt: {
          message: groupMessage(messageId, "g", "alice", minutes(1)) as TrackedMessage,
          readCount: 1,
          unreadCount: 2,
          receiverRead: false,
        },
        readerId,
        readAt: minutes(5),
      });
      const deletion = (...messageIds: string[]): ReceiptChange => ({
        kind: "deletion",
        conversationId: "g",
        messages: messageIds.map((messageId) => ({ messageId, senderId: "alice" })),
        deletedAt: minutes(6),
      });
      const head = await backend.feed.head(tenant);
      await backend.feed.publish(tenant, [receiptOf("m1", "r1"), receiptOf("m2", "r1")]);
      const [removed] = await backend.feed.publish(tenant, [receiptOf("m1", "r2")]);
      const [logged] = await backend.feed.publish(tenant, [deletion("m1")]);
      expect(logged?.change).toEqual(deletion("m1"));
      // The call and the outbox sweep both publish it, a receipt of m1 comes in late: none is logged.
      expect(await backend.feed.publish(tenant, [deletion("m1")])).toEqual([]);
      expect(await backend.feed.publish(tenant, [receiptOf("m1", "r3")])).toEqual([]);
      const kept = await backend.feed.readAfter(tenant, head, 10);
      expect(kept.map((p) => p.change)).toEqual([receiptOf("m2", "r1"), deletion("m1")]);
      // A resume token at a removed entry still resumes right after it.
      const after = await backend.feed.readAfter(tenant, removed?.position ?? head, 10);
      expect(after.map((p) => p.change)).toEqual([deletion("m1")]);
    });

    it("never moves a reader's horizon back along the log", async () => {
      const head = await backend.feed.head(tenant);
      await backend.feed.publish(tenant, [horizonChange("g", "r1", 5)]);
      expect(await backend.feed.publish(tenant, [horizonChange("g", "r1", 3)])).toEqual([]);
      expect(await backend.feed.publish(tenant, [horizonChange("g", "r1", 5)])).toEqual([]);
      await backend.feed.publish(tenant, [
        horizonChange("g", "r1", 7),
        horizonChange("h", "r1", 1),
      ]);
      const logged = await backend.feed.readAfter(tenant, head, 10);
      expect(logged.map((p) => p.change)).toEqual([
        horizonChange("g", "r1", 5),
        horizonChange("g", "r1", 7),
        horizonChange("h", "r1", 1),
      ]);
    });

    it("keeps a receipt acknowledged while the log cannot be written, and logs it once the log answers", async () => {
      const log = feedDownUntilUp(backend.feed);
      const errors: unknown[] = [];
      const service = new ReceiptService({
        store: backend.store,
        feed: log.feed,
        onAnnounceError: (error) => errors.push(error),
        announce: { graceMs: 0 },
      });
      const stream = reader(watch(watcher(), { conversationIds: ["g"] }));
      await stream.first();
      const [sent] = await service.sendReceipts(tenant, serviceCaller, {
        conversationId: "g",
        readerId: "r000003",
        messageIds: ["m1"],
      });
      expect(sent?.readCount).toBe(1);
      await vi.waitFor(() => expect(errors).toHaveLength(1));
      const pending = (await backend.store.pendingChanges(Date.now() + 1, 1_000)).filter(
        (p) => p.tenant === tenant,
      );
      expect(pending).toMatchObject([{ kind: "receipt", messageId: "m1", readerId: "r000003" }]);

      log.up();
      expect(await service.announcer.sweep()).toBeGreaterThanOrEqual(1);
      const [delivered] = await stream.take(1);
      expect(delivered?.change).toMatchObject({
        kind: "receipt",
        readerId: "r000003",
        receipt: { readCount: 1 },
      });
      const left = (await backend.store.pendingChanges(Date.now() + 1, 1_000)).filter(
        (p) => p.tenant === tenant,
      );
      expect(left).toEqual([]);
      // A second sweep finds nothing of it: announced once.
      await service.announcer.sweep();
      await read("m1", "r000004");
      const [next] = await stream.take(1);
      expect(next?.change).toMatchObject({ readerId: "r000004", receipt: { readCount: 2 } });
      await service.announcer.close();
    });

    it("publishes a private reader's horizon kept while the log was down as private", async () => {
      const log = feedDownUntilUp(backend.feed);
      const errors: unknown[] = [];
      const service = new ReceiptService({
        store: backend.store,
        feed: log.feed,
        privacy: new ReceiptPrivacy({ store: backend.store }),
        onAnnounceError: (error) => errors.push(error),
        announce: { graceMs: 0 },
      });
      await backend.store.putReceiptSettings(tenant, "r000005", [
        { conversationId: "g", visibility: "private" },
      ]);
      const w = watcher();
      const conversation = reader(watch(w, { conversationIds: ["g"] }));
      const own = reader(watch(w, { readerId: "r000005" }));
      await Promise.all([conversation.first(), own.first()]);
      await service.markConversationRead(tenant, serviceCaller, {
        conversationId: "g",
        readerId: "r000005",
        readUpTo: minutes(2),
      });
      // The call's own publishes (its private receipts, its horizon) failed; the sweep takes
      // entries older than now.
      await vi.waitFor(() => expect(errors).toHaveLength(2));
      await new Promise((resolve) => setTimeout(resolve, 5));
      log.up();
      expect(await service.announcer.sweep()).toBe(1);
      const [horizon] = await own.take(1);
      expect(horizon?.change).toMatchObject({
        kind: "horizon",
        readerId: "r000005",
        private: true,
      });
      await read("m1", "r000004");
      const [next] = await conversation.take(1);
      expect(next?.change).toMatchObject({ kind: "receipt", readerId: "r000004" });
      await service.announcer.close();
    });
  });
}

/** The feed, its publish failing until up() (as when the log cannot be reached). */
function feedDownUntilUp(feed: ChangeFeed): { feed: ChangeFeed; up(): void } {
  let down = true;
  const failing: ChangeFeed = Object.create(feed, {
    publish: {
      value: (t: string, changes: readonly ReceiptChange[]) =>
        down
          ? Promise.reject(new StoreUnavailableError("the log is down"))
          : feed.publish(t, changes),
    },
  });
  return {
    feed: failing,
    up: () => {
      down = false;
    },
  };
}

const horizonChange = (
  conversationId: string,
  readerId: string,
  readUpTo: number,
): ReceiptChange => ({
  kind: "horizon",
  conversationId,
  readerId,
  readUpTo,
});
