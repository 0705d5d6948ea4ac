import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import { ConversationType, ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { minutes } from "./support/fixtures.js";
import {
  eventually,
  type OpsTestServer,
  sample,
  scrape,
  startOpsServer,
} from "./support/ops-harness.js";
import { sharedRedisUrl, uniquePrefix } from "./support/shared-redis.js";

const rpc = (method: string, code?: string) => ({
  grpc_service: "receipts.v1.ReadReceiptService",
  grpc_method: method,
  grpc_type: method === "WatchReceipts" ? "server_stream" : "unary",
  ...(code === undefined ? {} : { grpc_code: code }),
});
const watchStream = {
  grpc_service: "receipts.v1.ReadReceiptService",
  grpc_method: "WatchReceipts",
};

describe("Prometheus metrics at /metrics", () => {
  let server: OpsTestServer;
  beforeAll(async () => {
    server = await startOpsServer();
    await createClient(
      MembershipService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    ).addMembers({ groupId: "g", userIds: ["s", "a", "b"], joinedAt: timestampFromMs(minutes(0)) });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("counts calls by method and code, times them, and times each store operation", async () => {
    const client = createClient(
      ReadReceiptService,
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
    );
    await client.trackMessages({
      messages: ["m1", "m2"].map((messageId) => ({
        conversationId: "g",
        conversationType: ConversationType.GROUP,
        messageId,
        senderId: "s",
        sentAt: timestampFromMs(minutes(1)),
      })),
    });
    for (let i = 0; i < 2; i++) {
      await client.getReceipts({ conversationId: "g", messageIds: ["missing"] }).catch(() => {});
    }
    await client
      .sendReceipts({ conversationId: "g", readerId: "a", messageIds: [] })
      .catch(() => {});

    const text = await scrape(server.baseUrl);
    expect(sample(text, "grpc_server_started_total", rpc("TrackMessages"))).toBe(1);
    expect(sample(text, "grpc_server_handled_total", rpc("TrackMessages", "OK"))).toBe(1);
    expect(sample(text, "grpc_server_handled_total", rpc("GetReceipts", "NotFound"))).toBe(2);
    expect(sample(text, "grpc_server_handled_total", rpc("SendReceipts", "InvalidArgument"))).toBe(
      1,
    );
    expect(sample(text, "grpc_server_handling_seconds_count", rpc("GetReceipts"))).toBe(2);
    expect(
      sample(text, "grpc_server_handling_seconds_bucket", { ...rpc("GetReceipts"), le: "+Inf" }),
    ).toBe(2);
    expect(
      sample(text, "receipts_store_operation_seconds_count", {
        operation: "insertMessages",
        outcome: "ok",
      }),
    ).toBe(1);
    // Validation rejected the SendReceipts call before any store call.
    expect(
      sample(text, "receipts_store_operation_seconds_count", {
        operation: "insertReceipts",
        outcome: "ok",
      }),
    ).toBe(0);
  });

  it("times the access check's store reads too, and a call reads each row once", async () => {
    const client = createClient(
      ReadReceiptService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    );
    await client.trackMessages({
      messages: [
        {
          conversationId: "g",
          conversationType: ConversationType.GROUP,
          messageId: "m-once",
          senderId: "s",
          sentAt: timestampFromMs(minutes(2)),
        },
      ],
    });
    const reads = (text: string) =>
      Object.fromEntries(
        ["getConversation", "getMessages", "erasureOf"].map((operation) => [
          operation,
          sample(text, "receipts_store_operation_seconds_count", { operation, outcome: "ok" }),
        ]),
      );
    const before = reads(await scrape(server.baseUrl));
    await client.sendReceipts({ conversationId: "g", readerId: "b", messageIds: ["m-once"] });
    const after = reads(await scrape(server.baseUrl));
    // The policy's reads (the conversation, the reader's erasure) are timed like the service's,
    // and the messages it read to decide are the ones the service records receipts of.
    expect({
      getConversation: (after.getConversation ?? 0) - (before.getConversation ?? 0),
      getMessages: (after.getMessages ?? 0) - (before.getMessages ?? 0),
      erasureOf: (after.erasureOf ?? 0) - (before.erasureOf ?? 0),
    }).toEqual({ getConversation: 1, getMessages: 1, erasureOf: 1 });
  });

  it("tracks open streams and the updates fanned out, and forgets a stream its client cancelled", async () => {
    const client = createClient(
      ReadReceiptService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    );
    const abort = new AbortController();
    const stream = client
      .watchReceipts({ conversationIds: ["g"] }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    expect((await stream.next()).value?.update.case).toBe("heartbeat");
    expect(sample(await scrape(server.baseUrl), "receipts_open_streams", watchStream)).toBe(1);

    await client.sendReceipts({ conversationId: "g", readerId: "b", messageIds: ["m1"] });
    expect((await stream.next()).value?.update.case).toBe("receipt");
    let text = await scrape(server.baseUrl);
    expect(sample(text, "receipts_watch_messages_sent_total", { update: "receipt" })).toBe(1);
    expect(sample(text, "receipts_watch_messages_sent_total", { update: "heartbeat" })).toBe(1);
    expect(
      sample(text, "receipts_store_operation_seconds_count", {
        operation: "feed.publish",
        outcome: "ok",
      }),
    ).toBeGreaterThan(0);

    abort.abort();
    await expect(stream.next()).rejects.toThrow();
    await eventually(
      async () => sample(await scrape(server.baseUrl), "receipts_open_streams", watchStream) === 0,
    );
    text = await scrape(server.baseUrl);
    expect(sample(text, "grpc_server_handled_total", rpc("WatchReceipts", "Canceled"))).toBe(1);
  });

  it("times Redis commands of any ioredis client", async () => {
    const redis = new Redis(sharedRedisUrl, { keyPrefix: uniquePrefix("ops-metrics") });
    try {
      const before = sample(await scrape(server.baseUrl), "receipts_redis_command_seconds_count", {
        command: "set",
        outcome: "ok",
      });
      await redis.set("k", "v", "EX", 60);
      await redis.set("k", "w", "EX", 60);
      const after = sample(await scrape(server.baseUrl), "receipts_redis_command_seconds_count", {
        command: "set",
        outcome: "ok",
      });
      expect(after - before).toBe(2);
    } finally {
      redis.disconnect();
    }
  });

  it("exposes the cache and rate-limit counters other parts increment, in this app's registry only", async () => {
    server.app.metrics.cacheLookups.inc({ cache: "read-counts", result: "hit" }, 3);
    server.app.metrics.cacheLookups.inc({ cache: "read-counts", result: "miss" });
    server.app.metrics.rateLimitRejections.inc({ limit: "tenant" });
    const text = await scrape(server.baseUrl);
    expect(
      sample(text, "receipts_cache_lookups_total", { cache: "read-counts", result: "hit" }),
    ).toBe(3);
    expect(sample(text, "receipts_rate_limit_rejections_total", { limit: "tenant" })).toBe(1);

    const other = await startOpsServer();
    try {
      const otherText = await scrape(other.baseUrl);
      expect(otherText).toContain("# TYPE receipts_cache_lookups_total counter");
      expect(
        sample(otherText, "receipts_cache_lookups_total", { cache: "read-counts", result: "hit" }),
      ).toBe(0);
      expect(sample(otherText, "grpc_server_handled_total", rpc("TrackMessages", "OK"))).toBe(0);
    } finally {
      await other.stop();
    }
  });
});
