import {
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BenchService } from "../bench/gen/bench/v1/bench_pb.js";
import { silentLogger } from "../src/logger.js";
import { createReceiptServer, type ReceiptServer } from "../src/server.js";
import { benchServiceStub } from "./support/bench-service-stub.js";
import { type InMemoryApi, openInMemoryApi } from "./support/in-memory-api.js";
import { eventually } from "./support/ops-harness.js";

/**
 * Every call's signal aborts when the call ends. Without a reason, Node builds a DOMException and
 * captures its stack, once per Connect call and twice per gRPC call inside connect: the largest
 * single function of a GetReceipts profile. The service's request gate gives those aborts a
 * reason made without a stack, which still reads as CANCELED. This fails if connect stops
 * handing the gate the context it aborts (`src/call-end-reasons.ts`).
 */
describe("the reason a call's signal aborts with when the call ends", () => {
  let api: InMemoryApi;
  let server: ReceiptServer;
  let port: number;
  // The outermost interceptor sees the signal of connect's own handler context.
  const signals: AbortSignal[] = [];
  const capture: Interceptor = (next) => (request) => {
    signals.push(request.signal);
    return next(request);
  };

  beforeAll(async () => {
    api = await openInMemoryApi();
    server = createReceiptServer(
      { ...api.deps, logger: silentLogger },
      {
        interceptors: [capture],
        routes: benchServiceStub(),
      },
    );
    port = await server.listen(0, "127.0.0.1");
  });
  afterAll(async () => {
    await server?.close(0);
    await api?.close();
  });

  const baseUrl = () => `http://127.0.0.1:${port}`;
  const transports: Record<string, () => Transport> = {
    "gRPC over HTTP/2": () => createGrpcTransport({ baseUrl: baseUrl() }),
    "Connect over HTTP/1.1": () =>
      createConnectTransport({ baseUrl: baseUrl(), httpVersion: "1.1" }),
    "Connect over HTTP/2": () => createConnectTransport({ baseUrl: baseUrl(), httpVersion: "2" }),
    "gRPC-Web over HTTP/1.1": () =>
      createGrpcWebTransport({ baseUrl: baseUrl(), httpVersion: "1.1" }),
  };

  for (const [name, transport] of Object.entries(transports)) {
    it(`is a stackless AbortError that reads as CANCELED (${name})`, async () => {
      const before = signals.length;
      await createClient(BenchService, transport()).empty({});
      const signal = signals[before];
      if (signal === undefined) throw new Error("the call did not reach the interceptors");
      await eventually(() => signal.aborted);
      const reason: unknown = signal.reason;
      expect(reason).not.toBeInstanceOf(DOMException);
      expect(reason).toBeInstanceOf(Error);
      expect(reason).toMatchObject({ name: "AbortError", message: "the call ended" });
      expect((reason as Error).stack ?? "").not.toContain("    at ");
      expect(ConnectError.from(reason).code).toBe(Code.Canceled);
    });
  }
});
