import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import { ConversationType, ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { minutes } from "./support/fixtures.js";
import {
  capturingLogger,
  eventually,
  type LogLine,
  type OpsTestServer,
  startOpsServer,
} from "./support/ops-harness.js";

describe("request logs", () => {
  let lines: LogLine[] = [];
  let server: OpsTestServer;
  const rpcLines = (requestId: string) =>
    lines.filter((line) => line.msg === "rpc" && line.requestId === requestId);

  beforeAll(async () => {
    const captured = capturingLogger("info");
    lines = captured.lines;
    server = await startOpsServer({ logger: captured.logger });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("writes one line per call with rpc, protocol, code, duration, tenant and the caller's request id, echoed back", async () => {
    const response = await fetch(`${server.baseUrl}/receipts.v1.ReadReceiptService/GetReceipts`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "req-4711" },
      body: '{"conversationId":"c","messageIds":["m"]}',
    });
    expect(response.status).toBe(404);
    expect(response.headers.get("x-request-id")).toBe("req-4711");
    await eventually(() => rpcLines("req-4711").length > 0);
    expect(rpcLines("req-4711")).toEqual([
      expect.objectContaining({
        level: 30,
        rpc: "receipts.v1.ReadReceiptService/GetReceipts",
        protocol: "connect",
        code: "not_found",
        durationMs: expect.any(Number),
        tenant: "default",
        error: "message_ids[0]: message m is not tracked",
      }),
    ]);
  });

  it("makes up a request id when there is none or it is unfit, and returns it over gRPC too", async () => {
    const ids: string[] = [];
    const client = createClient(
      MembershipService,
      createGrpcTransport({
        baseUrl: server.baseUrl,
        interceptors: [
          (next) => async (request) => {
            const response = await next(request);
            ids.push(response.header.get("x-request-id") ?? "");
            return response;
          },
        ],
      }),
    );
    await client.addMembers({ groupId: "g", userIds: ["s", "r"] });
    await client.listMembers({ groupId: "g" }, { headers: { "x-request-id": "bad id\twith tab" } });
    expect(ids).toHaveLength(2);
    for (const id of ids) {
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      await eventually(() => rpcLines(id).length === 1);
      expect(rpcLines(id)[0]).toMatchObject({ protocol: "grpc", code: "ok" });
    }
    expect(lines.some((line) => JSON.stringify(line).includes("with tab"))).toBe(false);

    const failed = await createClient(
      ReadReceiptService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    )
      .sendReceipts(
        { conversationId: "g", readerId: "r", messageIds: [] },
        { headers: { "x-request-id": "req-grpc-error" } },
      )
      .catch((error: unknown) => ConnectError.from(error));
    expect((failed as ConnectError).code).toBe(Code.InvalidArgument);
    expect((failed as ConnectError).metadata.get("x-request-id")).toBe("req-grpc-error");
  });

  it("logs a stream once, when it ends, with the messages it sent", async () => {
    const abort = new AbortController();
    const stream = createClient(
      ReadReceiptService,
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "2" }),
    )
      .watchReceipts(
        { conversationIds: ["g"] },
        { signal: abort.signal, headers: { "x-request-id": "req-stream" } },
      )
      [Symbol.asyncIterator]();
    await stream.next();
    expect(rpcLines("req-stream")).toEqual([]);
    abort.abort();
    await expect(stream.next()).rejects.toThrow();
    await eventually(() => rpcLines("req-stream").length === 1);
    expect(rpcLines("req-stream")[0]).toMatchObject({
      rpc: "receipts.v1.ReadReceiptService/WatchReceipts",
      code: "canceled",
      messages: 1,
    });
  });

  it("keeps message contents out of the logs and health checks at debug level", async () => {
    await createClient(
      ReadReceiptService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    ).trackMessages(
      {
        messages: [
          {
            conversationId: "g",
            conversationType: ConversationType.GROUP,
            messageId: "m-private-subject",
            senderId: "s",
            sentAt: timestampFromMs(minutes(1)),
          },
        ],
      },
      { headers: { "x-request-id": "req-private" } },
    );
    await createClient(Health, createGrpcTransport({ baseUrl: server.baseUrl })).check(
      {},
      { headers: { "x-request-id": "req-health" } },
    );
    await eventually(() => rpcLines("req-private").length === 1);
    expect(lines.some((line) => JSON.stringify(line).includes("m-private-subject"))).toBe(false);
    expect(rpcLines("req-health")).toEqual([]);
  });
});
