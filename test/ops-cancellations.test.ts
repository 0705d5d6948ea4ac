import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckRequestSchema } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { createGrpcJsClient } from "./support/grpc-js-client.js";
import {
  capturingLogger,
  eventually,
  HeldStore,
  type LogLine,
  type OpsTestServer,
  sample,
  scrape,
  startOpsServer,
} from "./support/ops-harness.js";

const root = join(import.meta.dirname, "..");

/**
 * Clients that go away (cancel, disconnect, are interrupted) mid-stream and mid-unary, on every
 * service: each such call is `canceled` in the request log (info or debug, no stack) and in
 * grpc_server_handled_total, never an "unexpected error" or Internal.
 */
describe("client cancellations", () => {
  let lines: LogLine[] = [];
  let server: OpsTestServer;
  let held: HeldStore | undefined;

  beforeAll(async () => {
    const captured = capturingLogger("debug");
    lines = captured.lines;
    server = await startOpsServer({
      logger: captured.logger,
      wrap: (backend) => {
        held = new HeldStore(backend.store);
        return { ...backend, store: held.store };
      },
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  const rpcLine = (requestId: string) =>
    lines.find((line) => line.msg === "rpc" && line.requestId === requestId);

  /** The call's one log line: canceled, at info or debug, with no error object or stack. */
  async function expectCanceledLine(requestId: string, rpc: string): Promise<void> {
    await eventually(() => rpcLine(requestId) !== undefined);
    const line = rpcLine(requestId);
    expect(line).toMatchObject({ rpc, code: "canceled" });
    expect(line?.level).toBeLessThanOrEqual(30);
    expect(line).not.toHaveProperty("err");
  }

  it("logs and counts an interrupted streaming buf curl (reflection, then a health watch) as canceled", async () => {
    const before = lines.length;
    const curl: ChildProcess = spawn(
      // The native binary itself: the npm wrapper would not pass SIGINT on.
      join(root, "node_modules", "@bufbuild", "buf-linux-x64", "bin", "buf"),
      [
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "-H",
        "x-request-id: buf-curl-watch",
        "--data",
        "{}",
        `${server.baseUrl}/grpc.health.v1.Health/Watch`,
      ],
      { cwd: tmpdir(), stdio: ["ignore", "pipe", "pipe"] },
    );
    try {
      let output = "";
      curl.stdout?.on("data", (chunk: Buffer) => {
        output += chunk.toString();
      });
      await eventually(() => output.includes("SERVING"), 20_000);
    } finally {
      curl.kill("SIGINT");
      await once(curl, "exit");
    }
    await expectCanceledLine("buf-curl-watch", "grpc.health.v1.Health/Watch");
    // buf curl keeps its reflection stream open until it exits: interrupted too.
    const reflection = () =>
      lines
        .slice(before)
        .filter(
          (line) =>
            line.msg === "rpc" &&
            line.rpc === "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        );
    await eventually(() => reflection().length > 0);
    for (const line of reflection()) {
      expect(line).toMatchObject({ code: "canceled" });
      expect(line.level).toBeLessThanOrEqual(30);
    }
  });

  it("logs a grpc-js client that cancels a reflection stream as canceled", async () => {
    const client = createGrpcJsClient(ServerReflection, server.address);
    try {
      const { Metadata } = await import("@grpc/grpc-js");
      const metadata = new Metadata();
      metadata.set("x-request-id", "reflection-cancel");
      const call = (
        client as unknown as {
          serverReflectionInfo(m: grpc.Metadata): grpc.ClientDuplexStream<unknown, unknown>;
        }
      ).serverReflectionInfo(metadata);
      call.on("error", () => {});
      const answered = once(call, "data");
      call.write({ messageRequest: { case: "listServices", value: "" } });
      await answered;
      call.cancel();
      await expectCanceledLine(
        "reflection-cancel",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      );
    } finally {
      client.close();
    }
  });

  it("logs a health watch and a receipt watch whose client aborts as canceled", async () => {
    const transport = createGrpcTransport({ baseUrl: server.baseUrl });
    for (const [requestId, open] of [
      [
        "health-abort",
        (signal: AbortSignal) =>
          createClient(Health, transport).watch(
            {},
            { signal, headers: { "x-request-id": "health-abort" } },
          ),
      ],
      [
        "watch-abort",
        (signal: AbortSignal) =>
          createClient(ReadReceiptService, transport).watchReceipts(
            { conversationIds: ["g"] },
            { signal, headers: { "x-request-id": "watch-abort" } },
          ),
      ],
    ] as const) {
      const abort = new AbortController();
      const stream = (open(abort.signal) as AsyncIterable<unknown>)[Symbol.asyncIterator]();
      await stream.next();
      abort.abort();
      await stream.next().catch(() => undefined);
      await expectCanceledLine(
        requestId,
        requestId === "health-abort"
          ? "grpc.health.v1.Health/Watch"
          : "receipts.v1.ReadReceiptService/WatchReceipts",
      );
    }
  });

  it("logs a client whose connection drops mid-stream as canceled", async () => {
    const session = http2.connect(server.baseUrl);
    session.on("error", () => {});
    const body = toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, {}));
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    const stream = session.request({
      ":method": "POST",
      ":path": "/grpc.health.v1.Health/Watch",
      "content-type": "application/grpc",
      te: "trailers",
      "x-request-id": "health-disconnect",
    });
    stream.on("error", () => {});
    stream.end(frame);
    await once(stream, "data");
    // The whole connection goes away, as when a client process is killed.
    session.socket.destroy();
    await expectCanceledLine("health-disconnect", "grpc.health.v1.Health/Watch");
  });

  it("logs unary calls whose client cancels or disconnects while the store works as canceled", async () => {
    if (held === undefined) throw new Error("the store was not wrapped");
    // gRPC: the client sends RST_STREAM(CANCEL).
    let hold = held.hold("getMessages");
    const abort = new AbortController();
    const grpcCall = createClient(
      ReadReceiptService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    )
      .getReceipts(
        { conversationId: "g", messageIds: ["m1"] },
        { signal: abort.signal, headers: { "x-request-id": "unary-cancel" } },
      )
      .catch(() => undefined);
    await hold.reached;
    abort.abort();
    await grpcCall;
    await expectCanceledLine("unary-cancel", "receipts.v1.ReadReceiptService/GetReceipts");
    hold.release();

    // Connect over HTTP/1.1: the client closes its connection.
    hold = held.hold("getMessages");
    const fetchAbort = new AbortController();
    const fetched = fetch(`${server.baseUrl}/receipts.v1.ReadReceiptService/GetReceipts`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "unary-disconnect" },
      body: '{"conversationId":"g","messageIds":["m1"]}',
      signal: fetchAbort.signal,
    }).catch(() => undefined);
    await hold.reached;
    fetchAbort.abort();
    await fetched;
    await expectCanceledLine("unary-disconnect", "receipts.v1.ReadReceiptService/GetReceipts");
    hold.release();
  });

  it("never logs a departed client as an error, nor counts it as Internal or Unknown", async () => {
    expect(lines.filter((line) => line.level >= 40 && !line.msg.startsWith("DEVELOPMENT"))).toEqual(
      [],
    );
    const text = await scrape(server.baseUrl);
    for (const line of text.split("\n")) {
      if (line.startsWith("grpc_server_handled_total")) {
        expect(line).not.toMatch(/grpc_code="(Internal|Unknown)"/);
      }
    }
    for (const [service, method, type] of [
      ["grpc.health.v1.Health", "Watch", "server_stream"],
      ["grpc.reflection.v1.ServerReflection", "ServerReflectionInfo", "bidi_stream"],
      ["receipts.v1.ReadReceiptService", "WatchReceipts", "server_stream"],
      ["receipts.v1.ReadReceiptService", "GetReceipts", "unary"],
    ] as const) {
      expect(
        sample(text, "grpc_server_handled_total", {
          grpc_service: service,
          grpc_method: method,
          grpc_type: type,
          grpc_code: "Canceled",
        }),
        `${service}/${method}`,
      ).toBeGreaterThan(0);
    }
  });
});
