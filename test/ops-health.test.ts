import { randomUUID } from "node:crypto";
import * as http2 from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { newApiKey, uniqueTenant } from "./support/auth-fixtures.js";
import { createGrpcJsClient, unary } from "./support/grpc-js-client.js";
import { eventually, type OpsTestServer, startOpsServer } from "./support/ops-harness.js";
import { RedisServerProcess } from "./support/redis-server.js";

const healthOver = (server: OpsTestServer) =>
  createClient(Health, createGrpcTransport({ baseUrl: server.baseUrl }));

/** GET over HTTP/2 cleartext (prior knowledge), as an HTTP/2 load balancer probes. */
function getOverHttp2(baseUrl: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(baseUrl);
    session.on("error", reject);
    const request = session.request({ ":method": "GET", ":path": path });
    let status = 0;
    let body = "";
    request.on("response", (headers) => {
      status = Number(headers[":status"]);
    });
    request.setEncoding("utf8");
    request.on("data", (chunk: string) => {
      body += chunk;
    });
    request.on("end", () => {
      session.close();
      resolve({ status, body });
    });
    request.on("error", reject);
    request.end();
  });
}

describe("grpc.health.v1.Health and the HTTP probes", () => {
  let server: OpsTestServer;
  let grpcJs: grpc.Client;
  beforeAll(async () => {
    server = await startOpsServer();
    grpcJs = createGrpcJsClient(Health, server.address);
  });
  afterAll(async () => {
    grpcJs?.close();
    await server?.stop();
  });

  it("answers Check for the server and each service to a stock grpc-js client; NOT_FOUND for others", async () => {
    const whole = await unary<{ status: ServingStatus }>(grpcJs, "check", { service: "" });
    expect(whole.status).toBe(ServingStatus.SERVING);
    const api = await unary<{ status: ServingStatus }>(grpcJs, "check", {
      service: "receipts.v1.ReadReceiptService",
    });
    expect(api.status).toBe(ServingStatus.SERVING);
    const unknown = await unary(grpcJs, "check", { service: "nope.v1.Nope" }).catch(
      (error: grpc.ServiceError) => error,
    );
    expect((unknown as grpc.ServiceError).code).toBe(5 /* NOT_FOUND */);
  });

  it("answers Check over the Connect protocol with plain JSON", async () => {
    const response = await fetch(`${server.baseUrl}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "SERVING" });
  });

  it("lists every service of the port, itself and reflection included", async () => {
    const listed = await healthOver(server).list({});
    expect(Object.keys(listed.statuses).sort()).toEqual([
      "",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "receipts.v1.MembershipService",
      "receipts.v1.MessageLifecycleService",
      "receipts.v1.PrivacyService",
      "receipts.v1.ReadReceiptService",
      "receipts.v1.UserDataService",
    ]);
    expect(Object.values(listed.statuses).map((s) => s.status)).toEqual(
      Array(9).fill(ServingStatus.SERVING),
    );
  });

  it("Watch sends the status at once; for an unknown service SERVICE_UNKNOWN, keeping the call open", async () => {
    const abort = new AbortController();
    const health = healthOver(server);
    const known = health.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await known.next()).value?.status).toBe(ServingStatus.SERVING);
    const unknown = health
      .watch({ service: "nope.v1.Nope" }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    expect((await unknown.next()).value?.status).toBe(ServingStatus.SERVICE_UNKNOWN);
    const more = unknown.next();
    const stillOpen = await Promise.race([
      more.then(() => false),
      new Promise((resolve) => setTimeout(() => resolve(true), 200)),
    ]);
    expect(stillOpen).toBe(true);
    abort.abort();
    await expect(more).rejects.toThrow();
  });

  it("serves /healthz, /readyz and /metrics over HTTP/1.1 and HTTP/2; other paths 404, POST 405", async () => {
    for (const path of ["/healthz", "/readyz"]) {
      const response = await fetch(`${server.baseUrl}${path}`);
      expect(response.status, path).toBe(200);
      const h2 = await getOverHttp2(server.baseUrl, path);
      expect(h2.status, `${path} over HTTP/2`).toBe(200);
    }
    expect(await (await fetch(`${server.baseUrl}/readyz`)).json()).toEqual({ status: "ready" });
    const metrics = await fetch(`${server.baseUrl}/metrics`);
    expect(metrics.headers.get("content-type")).toContain("text/plain");
    expect(await metrics.text()).toContain("# TYPE grpc_server_handled_total counter");
    expect((await getOverHttp2(server.baseUrl, "/metrics")).body).toContain(
      "receipts_open_streams",
    );
    expect((await fetch(`${server.baseUrl}/nope`)).status).toBe(404);
    expect((await fetch(`${server.baseUrl}/readyz`, { method: "POST" })).status).toBe(405);
  });
});

describe("readiness follows the dependencies", () => {
  it("turns NOT_SERVING and /readyz 503 when the store stops answering, while /healthz stays 200", async () => {
    const server = await startOpsServer();
    try {
      const health = healthOver(server);
      expect((await health.check({})).status).toBe(ServingStatus.SERVING);
      // A real failure: the embedded store's database is closed under the running service.
      await server.backend.store.close();
      expect((await health.check({})).status).toBe(ServingStatus.NOT_SERVING);
      const ready = await fetch(`${server.baseUrl}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({
        status: "not ready",
        failing: { store: expect.any(String) },
      });
      expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });

  it("with the Redis change feed: NOT_SERVING while Redis is down, SERVING again once it is back", async () => {
    const redis = await RedisServerProcess.start();
    const server = await startOpsServer({
      env: {
        RECEIPTS_CHANGE_FEED: "redis",
        RECEIPTS_REDIS_URL: redis.url,
        RECEIPTS_REDIS_KEY_PREFIX: `ops-health-${randomUUID()}:`,
      },
    });
    try {
      const health = healthOver(server);
      const status = async () => (await health.check({}, { timeoutMs: 5_000 })).status;
      expect(await status()).toBe(ServingStatus.SERVING);
      await redis.kill();
      await eventually(async () => (await status()) === ServingStatus.NOT_SERVING);
      const ready = await fetch(`${server.baseUrl}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ failing: { "change-feed": expect.any(String) } });
      await redis.restart();
      await eventually(async () => (await status()) === ServingStatus.SERVING, 10_000);
      expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(200);
    } finally {
      await server.stop();
      await redis.kill();
    }
  });
});

describe("with tenants configured (credentials required)", () => {
  it("answers health checks and reflection without credentials, while the API still demands them", async () => {
    const server = await startOpsServer({
      env: {
        RECEIPTS_TENANTS: JSON.stringify({
          tenants: [{ id: uniqueTenant("ops-health"), apiKeys: [newApiKey()] }],
        }),
      },
    });
    try {
      const transport = createGrpcTransport({ baseUrl: server.baseUrl });
      expect((await createClient(Health, transport).check({})).status).toBe(ServingStatus.SERVING);
      async function* listServices() {
        yield { messageRequest: { case: "listServices" as const, value: "" } };
      }
      for await (const answer of createClient(ServerReflection, transport).serverReflectionInfo(
        listServices(),
      )) {
        expect(answer.messageResponse.case).toBe("listServicesResponse");
      }
      const refused = await createClient(ReadReceiptService, transport)
        .getReceipts({ conversationId: "c", messageIds: ["m"] })
        .catch((error: unknown) => ConnectError.from(error));
      expect((refused as ConnectError).code).toBe(Code.Unauthenticated);
    } finally {
      await server.stop();
    }
  });
});

describe("health during shutdown", () => {
  it("Watch hears NOT_SERVING when draining starts, then ends with UNAVAILABLE; Check and /readyz agree", async () => {
    const server = await startOpsServer({ env: { RECEIPTS_SHUTDOWN_DELAY_SECONDS: "1" } });
    const health = healthOver(server);
    const watch = health.watch({})[Symbol.asyncIterator]();
    expect((await watch.next()).value?.status).toBe(ServingStatus.SERVING);

    const stopped = server.stop();
    expect((await watch.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    // During the shutdown delay the port still answers: not ready, alive, API refused.
    expect((await health.check({})).status).toBe(ServingStatus.NOT_SERVING);
    const ready = await fetch(`${server.baseUrl}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ status: "draining" });
    expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);
    const refused = await fetch(`${server.baseUrl}/receipts.v1.ReadReceiptService/GetReceipts`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"conversationId":"c","messageIds":["m"]}',
    });
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ code: "unavailable" });

    const ended = await watch.next().catch((error: unknown) => ConnectError.from(error));
    expect(ended).toBeInstanceOf(ConnectError);
    expect((ended as ConnectError).code).toBe(Code.Unavailable);
    await stopped;
  });
});
