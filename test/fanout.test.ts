import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import {
  ConversationType,
  ReadReceiptService,
  type WatchReceiptsResponse,
} from "../gen/receipts/v1/receipts_pb.js";
import { silentLogger } from "../src/logger.js";
import { RedisChangeFeed } from "../src/store/redis/redis-change-feed.js";
import { createTestKeyspace } from "./support/cassandra-test-keyspace.js";
import { fieldAtFault } from "./support/error-details.js";
import { minutes, users } from "./support/fixtures.js";
import { deleteKeys, sharedRedisUrl, uniquePrefix } from "./support/shared-redis.js";
import { startTestServer, type TestServer } from "./support/test-server.js";
import { follow, readersOf } from "./support/watch-follower.js";

type Receipts = Client<typeof ReadReceiptService>;

interface SharedStore {
  /** Environment that points every instance at the same store. */
  readonly env: Record<string, string>;
  close(): Promise<void>;
}

/**
 * Several instances of the service behind one Redis: they share the store and fan changes out
 * through the Redis change feed. `full` runs the single-instance rules (backpressure, 1,000
 * streams, expiry) too; they do not depend on the store.
 */
function describeFanout(
  storeName: string,
  openStore: () => Promise<SharedStore>,
  { full }: { full: boolean },
): void {
  describe(`WatchReceipts across instances on ${storeName}, over the network`, () => {
    let store: SharedStore;
    let keyPrefix: string;
    let a: TestServer;
    let b: TestServer;
    let throughA: Receipts;
    let throughB: Receipts;
    const messageIds = Array.from({ length: 100 }, (_, i) => `m${String(i).padStart(3, "0")}`);
    const readers = users("r", 40);
    // Long reader ids make updates large (~250 bytes), so that a few hundred fill the HTTP/2 windows.
    const longReaders = users(`${"x".repeat(110)}-`, 25);

    const env = () => ({
      RECEIPTS_CHANGE_FEED: "redis",
      RECEIPTS_REDIS_URL: sharedRedisUrl,
      RECEIPTS_REDIS_KEY_PREFIX: keyPrefix,
      ...store.env,
      RECEIPTS_WATCH_BUFFER: "200",
      RECEIPTS_SHUTDOWN_GRACE_SECONDS: "1",
    });
    const client = (server: TestServer) =>
      createClient(ReadReceiptService, createGrpcTransport({ baseUrl: server.baseUrl }));
    const send = (via: Receipts, readerId: string, ids = ["m000"], conversationId = "g") =>
      via.sendReceipts({ conversationId, readerId, messageIds: ids });

    beforeAll(async () => {
      store = await openStore();
      keyPrefix = uniquePrefix("fanout");
      a = await startTestServer(env());
      b = await startTestServer(env());
      throughA = client(a);
      throughB = client(b);
      const members = createClient(MembershipService, createGrpcTransport({ baseUrl: a.baseUrl }));
      for (const groupId of ["g", "h"]) {
        await members.addMembers({
          groupId,
          userIds: ["s", ...readers, ...longReaders],
          joinedAt: timestampFromMs(minutes(0)),
        });
      }
      await throughA.trackMessages({
        messages: [...messageIds.map((id) => [id, "g"]), ["h1", "h"]].map(
          ([messageId, conversationId], i) => ({
            conversationId,
            conversationType: ConversationType.GROUP,
            messageId,
            senderId: "s",
            sentAt: timestampFromMs(minutes(1 + i)),
          }),
        ),
      });
    });
    let aStopped = false;
    afterAll(async () => {
      if (!aStopped) await a?.stop();
      await b?.stop();
      await store?.close();
      await deleteKeys(keyPrefix);
    });

    it("delivers a receipt sent through A to every matching watcher on B, whatever its protocol", async () => {
      const byConversation = follow(throughB, { conversationIds: ["g"] });
      const bySender = follow(
        createClient(
          ReadReceiptService,
          createConnectTransport({ baseUrl: b.baseUrl, httpVersion: "1.1" }),
        ),
        { senderId: "s" },
      );
      const otherConversation = follow(throughB, { conversationIds: ["h"] });
      await Promise.all([byConversation, bySender, otherConversation].map((w) => w.heartbeat));
      await send(throughA, "r000000");
      await send(throughA, "r000001", ["h1"], "h");
      expect(readersOf(await byConversation.take(1))).toEqual(["r000000"]);
      expect(readersOf(await bySender.take(2))).toEqual(["r000000", "r000001"]);
      expect(readersOf(await otherConversation.take(1))).toEqual(["r000001"]);
      const [update] = byConversation.updates;
      expect(update?.update.case === "receipt" && update.update.value.receipt?.readCount).toBe(1);
      for (const w of [byConversation, bySender, otherConversation]) w.close();
    });

    it("gives a client that reconnects with its token exactly the updates it missed, then live ones", async () => {
      const first = follow(throughB, { conversationIds: ["g"] });
      await first.heartbeat;
      await send(throughA, "r000002");
      const [seen] = await first.take(1);
      first.close();
      await first.ended;
      await send(throughA, "r000003");
      await send(throughA, "r000004", ["h1"], "h");
      await send(throughB, "r000005");

      const resumed = follow(throughA, {
        conversationIds: ["g"],
        resumeToken: seen?.resumeToken ?? "",
      });
      expect(readersOf(await resumed.take(2))).toEqual(["r000003", "r000005"]);
      await send(throughB, "r000006");
      expect(readersOf(await resumed.take(3))).toEqual(["r000003", "r000005", "r000006"]);
      expect(new Set(resumed.updates.map((u) => u.resumeToken)).size).toBe(3);
      resumed.close();
    });

    // Single-instance rules: run once, they do not depend on the store.
    if (full) {
      it("ends a consumer that stops reading with RESOURCE_EXHAUSTED and a resume token, while others keep up", async () => {
        // Its own connection, so that the stalled stream's HTTP/2 windows fill up only for itself.
        const slowAbort = new AbortController();
        const slow = client(b)
          .watchReceipts({ conversationIds: ["g"] }, { signal: slowAbort.signal })
          [Symbol.asyncIterator]();
        expect((await slow.next()).value?.update.case).toBe("heartbeat");
        // From here on nobody reads `slow`: HTTP/2 flow control stalls the server's writes to it.
        const fast = follow(throughB, { conversationIds: ["g"] });
        await fast.heartbeat;

        // 2,500 updates (~600 kB): more than the HTTP/2 windows, socket buffers and the 200-update
        // buffer hold together.
        const flood = longReaders;
        for (const readerId of flood) await send(throughA, readerId, messageIds);
        const all = await fast.take(flood.length * messageIds.length);
        expect(readersOf(all.slice(0, 2))).toEqual([flood[0], flood[0]]);
        fast.close();

        const received: WatchReceiptsResponse[] = [];
        const error = await (async () => {
          try {
            for (let next = await slow.next(); !next.done; next = await slow.next()) {
              if (next.value.update.case !== "heartbeat") received.push(next.value);
            }
          } catch (reason) {
            return ConnectError.from(reason);
          }
          return undefined;
        })();
        slowAbort.abort();
        expect(error?.code).toBe(Code.ResourceExhausted);
        const token = error?.metadata.get("resume-token") ?? "";
        expect(received.length).toBeLessThan(all.length);
        expect(received.at(-1)?.resumeToken).toBe(token);

        // Resuming from the token yields exactly the rest.
        const rest = follow(throughB, { conversationIds: ["g"], resumeToken: token });
        const remaining = await rest.take(all.length - received.length);
        expect([...received, ...remaining].map((u) => u.resumeToken)).toEqual(
          all.map((u) => u.resumeToken),
        );
        rest.close();
      });

      it("serves 1,000 concurrent streams on one instance, each with its own update", async () => {
        const connections = Array.from({ length: 4 }, () => client(b));
        const conversations = ["g", "h"];
        const watchers = Array.from({ length: 1_000 }, (_, i) =>
          follow(connections[i % connections.length] as Receipts, {
            conversationIds: [conversations[i % 2] as string],
          }),
        );
        await Promise.all(watchers.map((w) => w.heartbeat));
        await send(throughA, "r000030", ["m001"]);
        await send(throughA, "r000031", ["h1"], "h");
        const got = await Promise.all(watchers.map((w) => w.take(1)));
        got.forEach((updates, i) => {
          expect(readersOf(updates)).toEqual([i % 2 === 0 ? "r000030" : "r000031"]);
        });
        for (const w of watchers) w.close();
      });

      it("answers a token older than the retention window with OUT_OF_RANGE, naming resume_token", async () => {
        const w = follow(throughB, { conversationIds: ["h"] });
        const openedAt = await w.heartbeat;
        await send(throughA, "r000032", ["h1"], "h");
        await w.take(1);
        w.close();
        // An instance whose clock is a day ahead appends: everything before leaves the window.
        const later = await RedisChangeFeed.open({
          url: sharedRedisUrl,
          keyPrefix,
          retentionMs: 3_600_000,
          logger: silentLogger,
          clock: () => Date.now() + 86_400_000,
        });
        await later.publish("default", [
          { kind: "horizon", conversationId: "elsewhere", readerId: "x", readUpTo: 0 },
        ]);
        await later.close();
        const expired = follow(throughB, { resumeToken: openedAt });
        const error = await expired.ended;
        expect(error?.code).toBe(Code.OutOfRange);
        expect(fieldAtFault(error)).toBe("resume_token");
        const garbage = await follow(throughB, { resumeToken: "rt1:12" }).ended;
        expect(garbage?.code).toBe(Code.InvalidArgument);
        expect(fieldAtFault(garbage)).toBe("resume_token");
      });
    }

    it("on shutdown of A ends its streams with UNAVAILABLE and a token, and the client resumes on B with nothing lost", async () => {
      const onA = follow(throughA, { conversationIds: ["g"] });
      await onA.heartbeat;
      await send(throughB, "r000033", ["m002"]);
      const [seen] = await onA.take(1);
      aStopped = true;
      await a.stop();
      const error = await onA.ended;
      expect(error?.code).toBe(Code.Unavailable);
      const token = error?.metadata.get("resume-token");
      expect(token).toBe(seen?.resumeToken);

      await send(throughB, "r000034", ["m002"]);
      await send(throughB, "r000035", ["m002"]);
      const onB = follow(throughB, { conversationIds: ["g"], resumeToken: token ?? "" });
      expect(readersOf(await onB.take(2))).toEqual(["r000034", "r000035"]);
      await send(throughB, "r000036", ["m002"]);
      expect(readersOf(await onB.take(3))).toEqual(["r000034", "r000035", "r000036"]);
      onB.close();
    });
  });
}

describeFanout(
  "one SQLite file",
  async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "receipts-fanout-"));
    return {
      env: { RECEIPTS_STORE: "embedded", RECEIPTS_DATA_DIR: dataDir },
      async close() {
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  },
  { full: true },
);

describeFanout(
  "Cassandra",
  async () => {
    const keyspace = await createTestKeyspace();
    return {
      env: { RECEIPTS_STORE: "cassandra", RECEIPTS_CASSANDRA_KEYSPACE: keyspace.keyspace },
      close: () => keyspace.drop(),
    };
  },
  { full: false },
);
