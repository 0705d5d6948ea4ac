import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { createServer } from "node:net";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type CallOptions, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import { ConversationType, ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import {
  bearer,
  expectCode,
  mintToken,
  newApiKey,
  secretBytes,
  uniqueTenant,
} from "./support/auth-fixtures.js";
import { retryDelayMs } from "./support/error-details.js";
import { minutes } from "./support/fixtures.js";
import { createGrpcJsClient, unary } from "./support/grpc-js-client.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/** Request rates, request size, ids per call, id length, page size and streams per user. */

interface TenantSpec {
  readonly id: string;
  readonly key: string;
  readonly secret: string;
  readonly limits: Record<string, number>;
}

const spec = (name: string, limits: Record<string, number>): TenantSpec => ({
  id: uniqueTenant(name),
  key: newApiKey(),
  secret: newApiKey(),
  limits,
});

const tenantsEnv = (...tenants: TenantSpec[]): string =>
  JSON.stringify({
    tenants: tenants.map((t) => ({
      id: t.id,
      apiKeys: [t.key],
      userTokens: { keys: [{ alg: "HS256", secret: t.secret }] },
      limits: t.limits,
    })),
  });

const asUser = async (tenant: TenantSpec, sub: string) =>
  bearer(await mintToken({ tenant: tenant.id, sub, key: secretBytes(tenant.secret) }));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A cheap call: "served" when it got past the limits (the message is not tracked, or the user
 * may not see it), else the code.
 */
const served = (baseUrl: string, options: CallOptions, grpcTransport = false) =>
  createClient(
    ReadReceiptService,
    grpcTransport
      ? createGrpcTransport({ baseUrl })
      : createConnectTransport({ baseUrl, httpVersion: "1.1" }),
  )
    .getReceipts({ conversationId: "g", messageIds: ["m"] }, options)
    .then(
      () => SERVED,
      (reason: unknown) => {
        const code = ConnectError.from(reason).code;
        return code === Code.NotFound || code === Code.PermissionDenied ? SERVED : Code[code];
      },
    );
const SERVED = "served";
const LIMITED = Code[Code.ResourceExhausted];

/** The error of a refused call, to read its retry hint. */
const limitedError = async (baseUrl: string, options: CallOptions, grpcTransport = false) =>
  expectCode(
    createClient(
      ReadReceiptService,
      grpcTransport
        ? createGrpcTransport({ baseUrl })
        : createConnectTransport({ baseUrl, httpVersion: "1.1" }),
    ).getReceipts({ conversationId: "g", messageIds: ["m"] }, options),
    Code.ResourceExhausted,
  );

describe("request rates, in process (embedded store)", () => {
  // One token a second: slow enough that a loaded CI machine still sees the bucket empty.
  const perUser = spec("per-user", {
    userRequestsPerSecond: 1,
    userBurst: 3,
    tenantRequestsPerSecond: 10_000,
    tenantBurst: 10_000,
  });
  const perTenant = spec("per-tenant", {
    tenantRequestsPerSecond: 0.5,
    tenantBurst: 4,
    userRequestsPerSecond: 0.5,
    userBurst: 1,
  });
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      RECEIPTS_TENANTS: tenantsEnv(perUser, perTenant),
      RECEIPTS_CORS_ORIGINS: "https://chat.example",
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("limits each user, answers RESOURCE_EXHAUSTED with retry-after-ms, and recovers", async () => {
    const alice = await asUser(perUser, "alice");
    for (let i = 0; i < 3; i++) expect(await served(server.baseUrl, alice)).toBe(SERVED);
    const refused = await limitedError(server.baseUrl, alice);
    const retryAfter = Number(refused.metadata.get("retry-after-ms"));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(1_000);
    // The same delay as a google.rpc.RetryInfo detail, for generic gRPC tooling.
    expect(retryDelayMs(refused)).toBe(retryAfter);
    // Over gRPC the hint comes as a trailer.
    const overGrpc = await limitedError(server.baseUrl, alice, true);
    expect(Number(overGrpc.metadata.get("retry-after-ms"))).toBeGreaterThan(0);
    expect(retryDelayMs(overGrpc)).toBe(Number(overGrpc.metadata.get("retry-after-ms")));
    // A browser page may read the hint too.
    const fromPage = await fetch(`${server.baseUrl}/receipts.v1.ReadReceiptService/GetReceipts`, {
      method: "POST",
      headers: {
        origin: "https://chat.example",
        "content-type": "application/json",
        ...alice.headers,
      },
      body: JSON.stringify({ conversationId: "g", messageIds: ["m"] }),
    });
    expect(fromPage.status).toBe(429);
    expect(fromPage.headers.get("retry-after-ms")).toMatch(/^\d+$/);
    expect(fromPage.headers.get("access-control-expose-headers")).toMatch(/retry-after-ms/i);
    // Operators see the refusals (three so far: Connect, gRPC, the page).
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/receipts_rate_limit_rejections_total\{limit="request_rate"\} 3\b/);
    // Another user of the tenant is not affected.
    expect(await served(server.baseUrl, await asUser(perUser, "bob"))).toBe(SERVED);
    await sleep(retryAfter + 20);
    expect(await served(server.baseUrl, alice)).toBe(SERVED);
  });

  it("limits the tenant as a whole; a call refused for its user spends nothing of the tenant", async () => {
    const alice = await asUser(perTenant, "alice");
    const service = bearer(perTenant.key);
    expect(await served(server.baseUrl, alice)).toBe(SERVED);
    // Alice's own bucket (burst 1) is empty: these are refused without touching the tenant's.
    for (let i = 0; i < 4; i++) expect(await served(server.baseUrl, alice)).toBe(LIMITED);
    // Burst 4, one spent by Alice: three more calls of anyone, then the tenant is limited.
    for (let i = 0; i < 3; i++) expect(await served(server.baseUrl, service)).toBe(SERVED);
    expect(await served(server.baseUrl, service)).toBe(LIMITED);
    expect(await served(server.baseUrl, await asUser(perTenant, "bob"))).toBe(LIMITED);
    // The other tenant on the same instance is not affected.
    expect(await served(server.baseUrl, bearer(perUser.key))).toBe(SERVED);
  });

  it("gives a stock grpc-js client the hint in its trailers", async () => {
    const client = createGrpcJsClient(ReadReceiptService, server.address);
    try {
      for (let i = 0; i < 5; i++) await served(server.baseUrl, bearer(perTenant.key));
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${perTenant.key}`);
      const error = await unary(
        client,
        "getReceipts",
        { conversationId: "g", messageIds: ["m"] },
        metadata,
      ).then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
      expect(error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(Number(error?.metadata.get("retry-after-ms")[0])).toBeGreaterThan(0);
    } finally {
      client.close();
    }
  });
});

describe("request rates shared through Redis", () => {
  const tenant = spec("shared", {
    tenantRequestsPerSecond: 4,
    tenantBurst: 3,
    userRequestsPerSecond: 4,
    userBurst: 3,
  });
  const prefix = `test-limits-${randomUUID()}:`;
  const servers: TestServer[] = [];
  afterAll(async () => {
    for (const server of servers) await server.stop();
    const redis = new Redis("redis://127.0.0.1:6379", { lazyConnect: true });
    try {
      await redis.connect();
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
    } finally {
      redis.disconnect();
    }
  });

  it("counts the calls of every instance in one bucket", async () => {
    for (let i = 0; i < 2; i++) {
      servers.push(
        await startTestServer({
          RECEIPTS_TENANTS: tenantsEnv(tenant),
          RECEIPTS_RATE_LIMITER: "redis",
          RECEIPTS_REDIS_URL: "redis://127.0.0.1:6379",
          RECEIPTS_REDIS_KEY_PREFIX: prefix,
        }),
      );
    }
    const [one, two] = servers.map((s) => s.baseUrl) as [string, string];
    const service = bearer(tenant.key);
    expect(await served(one, service)).toBe(SERVED);
    expect(await served(one, service)).toBe(SERVED);
    expect(await served(two, service, true)).toBe(SERVED);
    const refused = await limitedError(two, service);
    expect(await served(one, service)).toBe(LIMITED);
    const retryAfter = Number(refused.metadata.get("retry-after-ms"));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(250);
    await sleep(retryAfter + 30);
    expect(await served(two, service)).toBe(SERVED);
  });
});

describe("when Redis is down", () => {
  let redis: ChildProcess | undefined;
  let server: TestServer | undefined;
  afterAll(async () => {
    await server?.stop();
    if (redis !== undefined && redis.exitCode === null && redis.signalCode === null) {
      redis.kill("SIGKILL");
      await once(redis, "exit");
    }
  });

  it("lets calls through (fail open) rather than refusing everything", async () => {
    const port = await freePort();
    redis = await startRedis(port);
    const tenant = spec("fail-open", {
      tenantRequestsPerSecond: 0.1,
      tenantBurst: 2,
      userRequestsPerSecond: 0.1,
      userBurst: 2,
    });
    server = await startTestServer({
      RECEIPTS_TENANTS: tenantsEnv(tenant),
      RECEIPTS_RATE_LIMITER: "redis",
      RECEIPTS_REDIS_URL: `redis://127.0.0.1:${port}`,
    });
    const service = bearer(tenant.key);
    // Wait for the limiter's connection, then spend the burst: the limits are enforced.
    let outcomes: string[] = [];
    for (let i = 0; i < 50 && !outcomes.includes(LIMITED); i++) {
      outcomes.push(await served(server.baseUrl, service));
      if (!outcomes.includes(LIMITED)) await sleep(50);
    }
    expect(outcomes).toContain(LIMITED);
    redis.kill("SIGKILL");
    await once(redis, "exit");
    outcomes = [];
    for (let i = 0; i < 3; i++) outcomes.push(await served(server.baseUrl, service));
    expect(outcomes).toEqual([SERVED, SERVED, SERVED]);
  });
});

describe("request size, ids, page size and streams", () => {
  const tenant = spec("caps", {
    streamsPerUser: 2,
    tenantRequestsPerSecond: 10_000,
    tenantBurst: 10_000,
    userRequestsPerSecond: 10_000,
    userBurst: 10_000,
  });
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      RECEIPTS_TENANTS: tenantsEnv(tenant),
      RECEIPTS_MAX_REQUEST_BYTES: "16384",
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("refuses a request over RECEIPTS_MAX_REQUEST_BYTES with RESOURCE_EXHAUSTED and keeps serving", async () => {
    const service = bearer(tenant.key);
    const big = Array.from({ length: 100 }, (_, i) => `${"x".repeat(200)}${i}`);
    for (const transport of [
      createGrpcTransport({ baseUrl: server.baseUrl }),
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "2", useBinaryFormat: true }),
    ]) {
      const client = createClient(ReadReceiptService, transport);
      await expectCode(
        client.getReceipts({ conversationId: "g", messageIds: big }, service),
        Code.ResourceExhausted,
      );
    }
    // A body far larger than the cap, sent raw.
    const response = await fetch(`${server.baseUrl}/receipts.v1.ReadReceiptService/GetReceipts`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${tenant.key}` },
      body: JSON.stringify({ conversationId: "g", messageIds: ["y".repeat(8 * 1024 * 1024)] }),
    });
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    expect(await served(server.baseUrl, service)).toBe(SERVED);
    expect(await served(server.baseUrl, service, true)).toBe(SERVED);
  });

  it("caps ids per call and id length, naming the field, and serves page_size above 1,000 as 1,000", async () => {
    const service = bearer(tenant.key);
    const transport = createGrpcTransport({ baseUrl: server.baseUrl });
    const receipts = createClient(ReadReceiptService, transport);
    const members = createClient(MembershipService, transport);
    const tooMany = await expectCode(
      receipts.getReceipts(
        { conversationId: "g", messageIds: Array.from({ length: 101 }, (_, i) => `m${i}`) },
        service,
      ),
      Code.InvalidArgument,
    );
    expect(tooMany.rawMessage).toContain("message_ids");
    const tooLong = await expectCode(
      receipts.getReceipts({ conversationId: "g", messageIds: ["x".repeat(129)] }, service),
      Code.InvalidArgument,
    );
    expect(tooLong.rawMessage).toContain("message_ids[0]");
    const watchMany = await expectCode(
      (async () => {
        for await (const _ of receipts.watchReceipts(
          { conversationIds: Array.from({ length: 101 }, (_, i) => `c${i}`) },
          service,
        )) {
          return;
        }
      })(),
      Code.InvalidArgument,
    );
    expect(watchMany.rawMessage).toContain("conversation_ids");
    const users = Array.from({ length: 1_001 }, (_, i) => `u${String(i).padStart(4, "0")}`);
    await expectCode(
      members.addMembers({ groupId: "big", userIds: users }, service),
      Code.InvalidArgument,
    );
    await members.addMembers({ groupId: "big", userIds: users.slice(0, 1_000) }, service);
    await members.addMembers({ groupId: "big", userIds: users.slice(1_000) }, service);
    const page = await members.listMembers({ groupId: "big", pageSize: 5_000 }, service);
    expect(page.members).toHaveLength(1_000);
    expect(page.isFinished).toBe(false);
  });

  it("caps the streams one user holds open, and frees a slot when one closes", async () => {
    const alice = await asUser(tenant, "alice");
    const receipts = createClient(
      ReadReceiptService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    );
    await createClient(
      MembershipService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    ).addMembers(
      { groupId: "s", userIds: ["alice", "bob"], joinedAt: timestampFromMs(minutes(0)) },
      bearer(tenant.key),
    );
    await receipts.trackMessages(
      {
        messages: [
          {
            conversationId: "s",
            conversationType: ConversationType.GROUP,
            messageId: "s-1",
            senderId: "bob",
            sentAt: timestampFromMs(minutes(1)),
          },
        ],
      },
      bearer(tenant.key),
    );
    const aborts: AbortController[] = [];
    const open = async (options: CallOptions) => {
      const abort = new AbortController();
      aborts.push(abort);
      const stream = receipts
        .watchReceipts({ conversationIds: ["s"] }, { ...options, signal: abort.signal })
        [Symbol.asyncIterator]();
      await stream.next();
      return abort;
    };
    try {
      const first = await open(alice);
      await open(alice);
      await expectCode(open(alice), Code.ResourceExhausted);
      // Other users and the service are not affected.
      await open(await asUser(tenant, "bob"));
      for (let i = 0; i < 3; i++) await open(bearer(tenant.key));
      first.abort();
      let reopened = false;
      for (let i = 0; i < 40 && !reopened; i++) {
        reopened = await open(alice).then(
          () => true,
          () => false,
        );
        if (!reopened) await sleep(25);
      }
      expect(reopened).toBe(true);
    } finally {
      for (const abort of aborts) abort.abort();
    }
  });
});

/** A Redis of this test's own, on `port`, resolved once it accepts connections. */
async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--save", "", "--appendonly", "no"],
    {
      stdio: ["ignore", "pipe", "ignore"],
    },
  );
  let output = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`redis-server did not start: ${output}`)),
      10_000,
    );
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("Ready to accept connections")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}: ${output}`));
    });
  });
  child.stdout?.resume();
  return child;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() =>
        resolve(typeof address === "object" && address !== null ? address.port : 0),
      );
    });
  });
}
