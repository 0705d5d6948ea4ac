import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import {
  ConversationType,
  ReadReceiptService,
  type WatchReceiptsResponse,
} from "../gen/receipts/v1/receipts_pb.js";
import { createTestKeyspace } from "./support/cassandra-test-keyspace.js";
import { minutes, users } from "./support/fixtures.js";
import { deleteKeys, sharedRedisUrl, uniquePrefix } from "./support/shared-redis.js";
import { startTestServer, type TestServer } from "./support/test-server.js";
import { follow } from "./support/watch-follower.js";

type Receipts = Client<typeof ReadReceiptService>;

const bursts = 20;
const readersPerBurst = 20;

/** Per message, the (reader, count) pairs a stream announced, in stream order. */
function announcements(updates: readonly WatchReceiptsResponse[]) {
  const byMessage = new Map<string, { readerId: string; readCount: number }[]>();
  for (const { update } of updates) {
    if (update.case !== "receipt") continue;
    const messageId = update.value.receipt?.messageId ?? "";
    const list = byMessage.get(messageId) ?? [];
    list.push({ readerId: update.value.readerId, readCount: update.value.receipt?.readCount ?? 0 });
    byMessage.set(messageId, list);
  }
  return byMessage;
}

interface SharedStore {
  readonly env: Record<string, string>;
  close(): Promise<void>;
}

/**
 * Issue 13's bursts, from outside: two instances behind one Redis feed, 20 readers of a message
 * acknowledging it at once, half through each instance, 20 times; watchers on both instances.
 * Along every stream a message's count never goes down, each reader is announced once (also
 * when the same receipt arrives through both instances at once), and the last update carries
 * the stored count.
 */
function describeBursts(storeName: string, openStore: () => Promise<SharedStore>): void {
  describe(`bursts of concurrent readers through two instances on ${storeName}`, () => {
    let store: SharedStore;
    let keyPrefix: string;
    let a: TestServer;
    let b: TestServer;
    let throughA: Receipts;
    let throughB: Receipts;
    const readers = users("r", readersPerBurst);

    beforeAll(async () => {
      store = await openStore();
      keyPrefix = uniquePrefix("bursts");
      const env = {
        RECEIPTS_CHANGE_FEED: "redis",
        RECEIPTS_REDIS_URL: sharedRedisUrl,
        RECEIPTS_REDIS_KEY_PREFIX: keyPrefix,
        ...store.env,
      };
      a = await startTestServer(env);
      b = await startTestServer(env);
      throughA = createClient(ReadReceiptService, createGrpcTransport({ baseUrl: a.baseUrl }));
      throughB = createClient(
        ReadReceiptService,
        createConnectTransport({ baseUrl: b.baseUrl, httpVersion: "2" }),
      );
      const members = createClient(MembershipService, createGrpcTransport({ baseUrl: a.baseUrl }));
      await members.addMembers({
        groupId: "g",
        userIds: ["s", ...readers],
        joinedAt: timestampFromMs(minutes(0)),
      });
    });
    afterAll(async () => {
      await a?.stop();
      await b?.stop();
      await store?.close();
      await deleteKeys(keyPrefix);
    });

    const track = (prefix: string) =>
      throughA.trackMessages({
        messages: Array.from({ length: bursts }, (_, i) => ({
          conversationId: "g",
          conversationType: ConversationType.GROUP,
          messageId: `${prefix}${i}`,
          senderId: "s",
          sentAt: timestampFromMs(minutes(1 + i)),
        })),
      });

    async function expectAnnouncedInOrder(
      prefix: string,
      send: (messageId: string) => Promise<unknown>,
    ) {
      await track(prefix);
      const watchers = [
        follow(throughA, { conversationIds: ["g"] }),
        follow(throughB, { conversationIds: ["g"] }),
        follow(throughB, { senderId: "s" }),
      ];
      await Promise.all(watchers.map((w) => w.heartbeat));
      for (let i = 0; i < bursts; i++) await send(`${prefix}${i}`);
      const expected = bursts * readersPerBurst;
      for (const watcher of watchers) {
        await watcher.take(expected, 60_000);
        // A duplicate would arrive right behind: give it the time to.
        await new Promise((resolve) => setTimeout(resolve, 300));
        const seen = announcements(watcher.updates.filter((u) => u.update.case === "receipt"));
        expect(seen.size).toBe(bursts);
        for (const [messageId, list] of seen) {
          const counts = list.map((l) => l.readCount);
          expect(counts, `counts of ${messageId}`).toEqual([...counts].sort((x, y) => x - y));
          expect(counts.at(-1), `last count of ${messageId}`).toBe(readersPerBurst);
          expect(list.map((l) => l.readerId).sort(), `readers of ${messageId}`).toEqual(readers);
        }
        watcher.close();
      }
      const stored = await throughA.getReceipts({
        conversationId: "g",
        messageIds: Array.from({ length: bursts }, (_, i) => `${prefix}${i}`),
      });
      expect(stored.receipts.map((r) => r.readCount)).toEqual(Array(bursts).fill(readersPerBurst));
    }

    it("never runs a count backwards and announces each reader once, half the readers through each instance", async () => {
      // A connection per reader, as many clients are: calls reach the instances in any order.
      const clients = readers.map((_, i) =>
        createClient(
          ReadReceiptService,
          createGrpcTransport({ baseUrl: (i % 2 === 0 ? a : b).baseUrl }),
        ),
      );
      await expectAnnouncedInOrder("split-", (messageId) =>
        Promise.all(
          readers.map((readerId, i) =>
            (clients[i] as Receipts).sendReceipts({
              conversationId: "g",
              readerId,
              messageIds: [messageId],
            }),
          ),
        ),
      );
    });

    it("announces a receipt once when it arrives through both instances at the same moment", async () => {
      await expectAnnouncedInOrder("twice-", (messageId) =>
        Promise.all(
          readers.flatMap((readerId) =>
            [throughA, throughB].map((via) =>
              via.sendReceipts({ conversationId: "g", readerId, messageIds: [messageId] }),
            ),
          ),
        ),
      );
    });
  });
}

describeBursts("one SQLite file", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "receipts-bursts-"));
  return {
    env: { RECEIPTS_STORE: "embedded", RECEIPTS_DATA_DIR: dataDir },
    async close() {
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
});

describeBursts("Cassandra", async () => {
  const keyspace = await createTestKeyspace();
  return {
    env: { RECEIPTS_STORE: "cassandra", RECEIPTS_CASSANDRA_KEYSPACE: keyspace.keyspace },
    close: () => keyspace.drop(),
  };
});
