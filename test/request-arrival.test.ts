import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BenchService } from "../bench/gen/bench/v1/bench_pb.js";
import { silentLogger } from "../src/logger.js";
import { createReceiptServer, type ReceiptServer } from "../src/server.js";
import { benchServiceStub } from "./support/bench-service-stub.js";
import { type InMemoryApi, openInMemoryApi } from "./support/in-memory-api.js";

/**
 * The server tells the store of each request before anything of it runs: the embedded store's
 * memories look for other processes' commits again then (src/store/sqlite/sqlite-row-changes.ts),
 * so that a request sees what was committed elsewhere before it arrived. This fails if a
 * request's handler can run before its arrival is told.
 */
describe("the arrival of each request", () => {
  let api: InMemoryApi;
  let server: ReceiptServer;
  let port: number;
  const events: string[] = [];

  beforeAll(async () => {
    api = await openInMemoryApi();
    server = createReceiptServer(
      { ...api.deps, logger: silentLogger },
      {
        onRequestArrived: () => events.push("arrived"),
        routes: benchServiceStub(() => events.push("handled")),
        fallback: (_request, response) => {
          events.push("handled");
          response.writeHead(204);
          response.end();
        },
      },
    );
    port = await server.listen(0, "127.0.0.1");
  });
  afterAll(() => Promise.all([server?.close(0), api?.close()]));

  const protocols: [string, (baseUrl: string) => Transport][] = [
    ["gRPC over HTTP/2", (baseUrl) => createGrpcTransport({ baseUrl })],
    ["Connect over HTTP/1.1", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" })],
  ];
  const baseUrl = () => `http://127.0.0.1:${port}`;

  for (const [name, transport] of protocols) {
    it(`is told before the call runs: ${name}`, async () => {
      events.length = 0;
      const client = createClient(BenchService, transport(baseUrl()));
      await client.empty({});
      await Promise.all([client.empty({}), client.empty({})]);
      expect(events.slice(0, 2)).toEqual(["arrived", "handled"]);
      expect(events.filter((e) => e === "arrived")).toHaveLength(3);
      expect(events.filter((e) => e === "handled")).toHaveLength(3);
      // Of two calls in flight together, each arrival comes before its own handling.
      expect(events.indexOf("arrived", 2)).toBeLessThan(events.indexOf("handled", 2));
    });
  }

  it("is told for plain HTTP requests too (probes, metrics)", async () => {
    events.length = 0;
    const response = await fetch(`${baseUrl()}/healthz-anything`);
    expect(response.status).toBe(204);
    expect(events).toEqual(["arrived", "handled"]);
  });
});
