import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import { ConversationType, ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { buildService, type ServiceProcess, startBuiltService } from "./support/built-service.js";
import { createTestKeyspace } from "./support/cassandra-test-keyspace.js";
import { minutes, users } from "./support/fixtures.js";
import { RedisServerProcess } from "./support/redis-server.js";
import { startTestServer, type TestServer } from "./support/test-server.js";
import { follow, readersOf } from "./support/watch-follower.js";

type Receipts = Client<typeof ReadReceiptService>;

const grpc = (baseUrl: string): Receipts =>
  createClient(ReadReceiptService, createGrpcTransport({ baseUrl }));

async function seed(baseUrl: string, readers: readonly string[], messageIds: readonly string[]) {
  const members = createClient(MembershipService, createGrpcTransport({ baseUrl }));
  await members.addMembers({
    groupId: "g",
    userIds: ["s", ...readers],
    joinedAt: timestampFromMs(minutes(0)),
  });
  for (let i = 0; i < messageIds.length; i += 100) {
    await grpc(baseUrl).trackMessages({
      messages: messageIds.slice(i, i + 100).map((messageId, k) => ({
        conversationId: "g",
        conversationType: ConversationType.GROUP,
        messageId,
        senderId: "s",
        sentAt: timestampFromMs(minutes(1) + i + k),
      })),
    });
  }
}

const p99 = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0;
};

/**
 * SendReceipts of fresh receipts from `clients` concurrent loops for `ms`; resolves with each
 * call's latency. `next()` hands out (reader, message) pairs nobody sent yet.
 */
async function load(
  client: Receipts,
  next: () => { readerId: string; messageId: string },
  ms: number,
  clients = 4,
): Promise<number[]> {
  const latencies: number[] = [];
  const until = Date.now() + ms;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < until) {
        const { readerId, messageId } = next();
        const startedAt = performance.now();
        await client.sendReceipts({ conversationId: "g", readerId, messageIds: [messageId] });
        latencies.push(performance.now() - startedAt);
      }
    }),
  );
  return latencies;
}

describe("a Redis that stalls (SIGSTOP) under Cassandra", () => {
  let redis: RedisServerProcess;
  let keyspace: Awaited<ReturnType<typeof createTestKeyspace>>;
  let server: TestServer;
  const readers = users("r", 50);
  const messageIds = Array.from({ length: 400 }, (_, i) => `m${i}`);
  let sent = 0;
  const next = () => {
    const k = sent++;
    return {
      readerId: readers[k % readers.length] as string,
      messageId: messageIds[Math.floor(k / readers.length)] as string,
    };
  };

  beforeAll(async () => {
    redis = await RedisServerProcess.start();
    keyspace = await createTestKeyspace();
    server = await startTestServer({
      RECEIPTS_STORE: "cassandra",
      RECEIPTS_CASSANDRA_KEYSPACE: keyspace.keyspace,
      RECEIPTS_REDIS_URL: redis.url,
    });
    await seed(server.baseUrl, readers, messageIds);
  });
  afterAll(async () => {
    redis?.resume();
    await server?.stop();
    await keyspace?.drop();
    await redis?.stop();
  });

  it("keeps SendReceipts within 2x its p99, tells open streams, and delivers every receipt once Redis answers", async () => {
    const client = grpc(server.baseUrl);
    await load(client, next, 1_000); // warm-up: connections, prepared statements, caches
    const normal = await load(client, next, 4_000);

    const watcher = follow(client, { conversationIds: ["g"] });
    const resumeToken = await watcher.heartbeat;
    const before = sent;
    redis.pause();
    let stalled: number[];
    try {
      stalled = await load(client, next, 5_000);
    } finally {
      redis.resume();
    }
    const acknowledged = sent - before;
    expect(stalled.length).toBe(acknowledged);
    expect(stalled.length).toBeGreaterThan(50);
    // Acknowledging did not wait on Redis.
    expect(p99(stalled)).toBeLessThanOrEqual(2 * p99(normal));

    // The open stream was told it cannot follow the log, with where to resume.
    const ended = await watcher.ended;
    expect(ended?.code).toBe(Code.Unavailable);
    const token = ended?.metadata.get("resume-token");
    expect(token).toBeTruthy();
    expect(resumeToken).toBeTruthy();

    const resumed = follow(client, { conversationIds: ["g"], resumeToken: token ?? "" });
    const pairs = (from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) => {
        const k = from + i;
        return `${messageIds[Math.floor(k / readers.length)]}/${readers[k % readers.length]}`;
      });
    const updates = await resumed.take(acknowledged, 60_000);
    await new Promise((resolve) => setTimeout(resolve, 500)); // room for a duplicate to show
    const announced = resumed.updates.map((u) =>
      u.update.case === "receipt"
        ? `${u.update.value.receipt?.messageId}/${u.update.value.readerId}`
        : "",
    );
    expect(announced.sort()).toEqual(pairs(before, sent).sort());
    expect(updates.length).toBe(acknowledged);
    resumed.close();
  }, 120_000);
});

/**
 * The instance dies (kill -9) after answering OK and before the change log had the receipts
 * (Redis is down meanwhile, so they cannot have been published); another instance on the same
 * store delivers them all to a watcher that resumes with its token.
 */
function describeKilledInstance(
  storeName: string,
  storeEnv: () => Promise<StoreEnv>,
  /** Nothing may arrive this long after the kill (the outbox's takeover lapse not yet over). */
  quietForMs = 0,
): void {
  describe(`an instance killed with acknowledged receipts not yet logged, on ${storeName}`, () => {
    let build: ReturnType<typeof buildService>;
    let redis: RedisServerProcess;
    let store: StoreEnv;
    const running: ServiceProcess[] = [];
    const readers = users("r", 10);

    beforeAll(async () => {
      build = buildService(`trust-kill-${storeName.replace(/\W/g, "")}`);
      redis = await RedisServerProcess.start();
      store = await storeEnv();
    });
    afterAll(async () => {
      for (const service of running) service.child.kill("SIGKILL");
      await store?.close();
      await redis?.stop();
      build?.remove();
    });

    it("leaves them to the next instance, which logs every one", async () => {
      const env = {
        ...store.env,
        RECEIPTS_CHANGE_FEED: "redis",
        RECEIPTS_REDIS_URL: redis.url,
      };
      const first = await startBuiltService(build.dir, env);
      running.push(first);
      await seed(first.baseUrl, readers, ["m1"]);
      const watcher = follow(grpc(first.baseUrl), { conversationIds: ["g"] });
      const resumeToken = await watcher.heartbeat;
      watcher.close();

      // Redis goes away with the log saved (as a persistent Redis keeps it): nothing sent now can
      // reach the log, not even from a socket buffer (a stopped Redis would still read those).
      await redis.save();
      await redis.kill();
      const client = grpc(first.baseUrl);
      for (const readerId of readers.slice(0, 5)) {
        const { receipts } = await client.sendReceipts({
          conversationId: "g",
          readerId,
          messageIds: ["m1"],
        });
        expect(receipts[0]?.readCount).toBeGreaterThan(0);
      }
      first.child.kill("SIGKILL");
      await new Promise((resolve) => first.child.once("exit", resolve));
      await redis.restart();

      const second = await startBuiltService(build.dir, env);
      running.push(second);
      const resumed = follow(grpc(second.baseUrl), { conversationIds: ["g"], resumeToken });
      if (quietForMs > 0) {
        await new Promise((resolve) => setTimeout(resolve, quietForMs));
        expect(resumed.updates).toEqual([]);
      }
      const delivered = await resumed.take(5, 30_000);
      expect(readersOf(delivered).sort()).toEqual(readers.slice(0, 5));
      const last = delivered.at(-1);
      expect(last?.update.case === "receipt" && last.update.value.receipt?.readCount).toBe(5);
      resumed.close();
    }, 120_000);
  });
}

interface StoreEnv {
  readonly env: Record<string, string>;
  close(): Promise<void>;
}

describeKilledInstance("the embedded store", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "receipts-kill-"));
  return {
    env: { RECEIPTS_STORE: "embedded", RECEIPTS_DATA_DIR: dataDir },
    async close() {
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
});

describeKilledInstance("Cassandra", async () => {
  const keyspace = await createTestKeyspace();
  return {
    env: { RECEIPTS_STORE: "cassandra", RECEIPTS_CASSANDRA_KEYSPACE: keyspace.keyspace },
    close: () => keyspace.drop(),
  };
});

// The lapse is the operator's (RECEIPTS_CASSANDRA_OUTBOX_LAPSE_SECONDS): at 30 s, nothing of the
// dead instance's is published 12 s after its death, when the default 10 s would have.
describeKilledInstance(
  "Cassandra, with a 30-s outbox lapse",
  async () => {
    const keyspace = await createTestKeyspace();
    return {
      env: {
        RECEIPTS_STORE: "cassandra",
        RECEIPTS_CASSANDRA_KEYSPACE: keyspace.keyspace,
        RECEIPTS_CASSANDRA_OUTBOX_LAPSE_SECONDS: "30",
      },
      close: () => keyspace.drop(),
    };
  },
  12_000,
);
