import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const allowed = "http://chat.example.test:5173";
const other = "http://evil.example.test";
const unary = "/receipts.v1.ReadReceiptService/GetReceipts";
const stream = "/receipts.v1.ReadReceiptService/WatchReceipts";

/** A browser's preflight for a Connect call that carries a user token. */
const preflight = (server: TestServer, path: string, origin: string) =>
  fetch(`${server.baseUrl}${path}`, {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization,connect-protocol-version,content-type",
    },
  });

const listed = (response: Response, header: string): string[] =>
  (response.headers.get(header) ?? "").split(",").map((name) => name.trim().toLowerCase());

describe("CORS with RECEIPTS_CORS_ORIGINS set", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ RECEIPTS_CORS_ORIGINS: `${allowed}, http://localhost:5173` });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it.each([unary, stream])("answers an allowed origin's preflight for %s", async (path) => {
    const response = await preflight(server, path, allowed);
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe(allowed);
    expect(listed(response, "vary")).toContain("origin");
    expect(listed(response, "access-control-allow-methods")).toEqual(
      expect.arrayContaining(["post", "get"]),
    );
    expect(listed(response, "access-control-allow-headers")).toEqual(
      expect.arrayContaining([
        "authorization",
        "connect-protocol-version",
        "content-type",
        "connect-timeout-ms",
        "x-grpc-web",
        "x-user-agent",
      ]),
    );
    expect(Number(response.headers.get("access-control-max-age"))).toBeGreaterThan(0);
  });

  it("gives a disallowed origin's preflight no permission", async () => {
    const response = await preflight(server, unary, other);
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("lets an allowed origin read unary answers and errors, exposing the gRPC-Web and resume headers", async () => {
    const response = await fetch(`${server.baseUrl}${unary}`, {
      method: "POST",
      headers: { origin: allowed, "content-type": "application/json" },
      body: JSON.stringify({ conversationId: "nowhere", messageIds: ["m"] }),
    });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ code: "not_found" });
    expect(response.headers.get("access-control-allow-origin")).toBe(allowed);
    expect(listed(response, "access-control-expose-headers")).toEqual(
      expect.arrayContaining([
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "resume-token",
      ]),
    );
  });

  it("lets an allowed origin open the server stream over HTTP/1.1", async () => {
    const abort = new AbortController();
    const body = new TextEncoder().encode(JSON.stringify({ conversationIds: ["team"] }));
    const envelope = new Uint8Array(5 + body.length);
    new DataView(envelope.buffer).setUint32(1, body.length);
    envelope.set(body, 5);
    const response = await fetch(`${server.baseUrl}${stream}`, {
      method: "POST",
      headers: { origin: allowed, "content-type": "application/connect+json" },
      body: envelope,
      signal: abort.signal,
    });
    try {
      expect(response.status).toBe(200);
      expect(response.headers.get("access-control-allow-origin")).toBe(allowed);
      const reader = response.body?.getReader();
      const first = await reader?.read();
      // The stream opens with a heartbeat: the envelope's JSON names it.
      expect(new TextDecoder().decode(first?.value?.subarray(5))).toContain("heartbeat");
    } finally {
      abort.abort();
    }
  });

  it("does not grant a disallowed origin on actual responses either", async () => {
    const response = await fetch(`${server.baseUrl}${unary}`, {
      method: "POST",
      headers: { origin: other, "content-type": "application/json" },
      body: JSON.stringify({ conversationId: "nowhere", messageIds: ["m"] }),
    });
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("CORS by default", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("allows no origin", async () => {
    const response = await preflight(server, unary, allowed);
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    expect(response.headers.get("access-control-allow-headers")).toBeNull();
  });
});

describe("RECEIPTS_CORS_ORIGINS", () => {
  it("is a comma-separated list of origins, empty by default", () => {
    expect(loadConfig({}).corsOrigins).toEqual([]);
    expect(
      loadConfig({ RECEIPTS_CORS_ORIGINS: "https://chat.example.com, http://127.0.0.1:5173," })
        .corsOrigins,
    ).toEqual(["https://chat.example.com", "http://127.0.0.1:5173"]);
  });

  it("refuses anything that is not exactly an origin, naming each", () => {
    const bad = [
      "*",
      "https://chat.example.com/",
      "chat.example.com",
      "ftp://x.test",
      "https://A.test",
    ];
    let error: unknown;
    try {
      loadConfig({ RECEIPTS_CORS_ORIGINS: ["https://ok.test", ...bad].join(",") });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(bad.length);
    for (const [i, origin] of bad.entries()) expect(problems[i]).toContain(` ${origin} `);
  });
});
