import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  GetReceiptsResponseSchema,
  ReadReceiptService,
  SendReceiptsResponseSchema,
  WatchReceiptsResponseSchema,
} from "../gen/receipts/v1/receipts_pb.js";
import { endCallsWithReason } from "../src/call-end-reasons.js";
import { registerBenchRoutes } from "./bench-routes.js";

/**
 * The framework ceilings (bench/scenarios/ceilings.ts): one process answering
 * GetReceipts, SendReceipts and WatchReceipts with canned answers (the
 * service's own answers, handed over in CEILING_GET, CEILING_SEND and
 * CEILING_WATCH as base64 protobuf) and nothing else.
 * CEILING_KIND: `connect` (connect-node with the service's adapter options, no
 * interceptors), `grpc-js` (@grpc/grpc-js with protobuf-es codecs) or `raw`
 * (node:http2 writing pre-encoded gRPC frames). SIGUSR2 runs a full GC, so
 * that RSS read from /proc afterwards compares with the service's figures.
 */
const kind = process.env.CEILING_KIND ?? "connect";
const canned = <D extends DescMessage>(schema: D, variable: string): MessageShape<D> =>
  fromBinary(schema, Buffer.from(process.env[variable] ?? "", "base64"));
const getAnswer = canned(GetReceiptsResponseSchema, "CEILING_GET");
const sendAnswer = canned(SendReceiptsResponseSchema, "CEILING_SEND");
const watchAnswer = canned(WatchReceiptsResponseSchema, "CEILING_WATCH");

const path = (method: string) => `/${ReadReceiptService.typeName}/${method}`;
const untilAborted = (signal: AbortSignal) =>
  new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));

/** connect-node: the same generated service, the same adapter options as src/server.ts. */
function connectServer(): net.Server {
  const routes = (router: ConnectRouter) => {
    // The empty stream and its broadcast, as on the service: the fan-out's ceiling (a).
    registerBenchRoutes(router, async () => 0);
    router.service(ReadReceiptService, {
      getReceipts: () => getAnswer,
      sendReceipts: () => sendAnswer,
      async *watchReceipts(_request, context) {
        yield watchAnswer;
        await untilAborted(context.signal);
      },
    });
  };
  const handler = connectNodeAdapter({
    routes,
    acceptCompression: [compressionGzip, compressionBrotli],
    readMaxBytes: 1_048_576, // RECEIPTS_MAX_REQUEST_BYTES by default
    // The service's gate too, so that (a) does not pay the end-of-call DOMExceptions it spares.
    requestGate: endCallsWithReason,
  });
  const h1 = http.createServer({ keepAliveTimeout: 65_000 }, handler);
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: 10_000_000 } }, handler);
  // One port for both protocols, as src/server.ts does it (the sniffing costs once per connection).
  return net.createServer((socket) => {
    socket.once("data", (head) => {
      socket.pause();
      socket.unshift(head);
      if (head.toString("latin1", 0, 3) === "PRI") h2.emit("connection", socket);
      else {
        h1.emit("connection", socket);
        socket.resume();
      }
    });
  });
}

/** @grpc/grpc-js serving the same methods, protobuf-es serializing each answer. */
async function grpcJsServer(): Promise<number> {
  const method = <D extends DescMessage>(name: string, output: D, stream: boolean) => ({
    path: path(name),
    requestStream: false,
    responseStream: stream,
    requestSerialize: (value: Buffer) => value,
    // The request is read as bytes only: the canned answer does not depend on it.
    requestDeserialize: (bytes: Buffer) => bytes,
    responseSerialize: (value: MessageShape<D>) => Buffer.from(toBinary(output, value)),
    responseDeserialize: (bytes: Buffer) => fromBinary(output, bytes),
  });
  const server = new grpc.Server({ "grpc.max_concurrent_streams": 10_000_000 });
  server.addService(
    {
      GetReceipts: method("GetReceipts", GetReceiptsResponseSchema, false),
      SendReceipts: method("SendReceipts", SendReceiptsResponseSchema, false),
      WatchReceipts: method("WatchReceipts", WatchReceiptsResponseSchema, true),
    },
    {
      GetReceipts: (_call: unknown, done: grpc.sendUnaryData<unknown>) => done(null, getAnswer),
      SendReceipts: (_call: unknown, done: grpc.sendUnaryData<unknown>) => done(null, sendAnswer),
      WatchReceipts: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        call.write(watchAnswer);
      },
    },
  );
  return new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) =>
      error === null ? resolve(port) : reject(error),
    ),
  );
}

/** node:http2 and nothing else: pre-encoded gRPC frames, the request body read and ignored. */
function rawServer(): http2.Http2Server {
  const frame = <D extends DescMessage>(schema: D, message: MessageShape<D>) => {
    const bytes = toBinary(schema, message);
    const out = Buffer.alloc(5 + bytes.length);
    out.writeUInt32BE(bytes.length, 1);
    out.set(bytes, 5);
    return out;
  };
  const frames = new Map([
    [path("GetReceipts"), frame(GetReceiptsResponseSchema, getAnswer)],
    [path("SendReceipts"), frame(SendReceiptsResponseSchema, sendAnswer)],
  ]);
  const watchFrame = frame(WatchReceiptsResponseSchema, watchAnswer);
  const headers = { ":status": 200, "content-type": "application/grpc" };
  const server = http2.createServer({ settings: { maxConcurrentStreams: 10_000_000 } });
  server.on("stream", (stream, request) => {
    const at = request[":path"] ?? "";
    stream.on("data", () => undefined);
    stream.on("error", () => undefined);
    if (at === path("WatchReceipts")) {
      stream.respond(headers);
      stream.write(watchFrame);
      return;
    }
    const answer = frames.get(at);
    stream.once("end", () => {
      if (answer === undefined) {
        stream.respond({ ...headers, "grpc-status": "12" }, { endStream: true });
        return;
      }
      stream.respond(headers, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(answer);
    });
  });
  return server;
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as net.AddressInfo).port;
}

const port =
  kind === "grpc-js"
    ? await grpcJsServer()
    : await listen(kind === "raw" ? rawServer() : connectServer());
process.on("SIGUSR2", () => (globalThis as { gc?: () => void }).gc?.());
process.on("SIGTERM", () => process.exit(0));
process.stdout.write(`${JSON.stringify({ ceilingServer: kind, port })}\n`);
