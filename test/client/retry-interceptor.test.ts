import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport, type ServiceImpl } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backoffDelayMs } from "../../client/src/backoff.js";
import { createReceiptsClient, ReceiptsError, RetryBudget } from "../../client/src/node.js";
import {
  buildReceiptsClient,
  type ReceiptsClientOptions,
} from "../../client/src/receipts-client.js";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { MembershipService } from "../../gen/receipts/v1/membership_pb.js";
import {
  GetReceiptsResponseSchema,
  ReadReceiptService,
  SendReceiptsResponseSchema,
} from "../../gen/receipts/v1/receipts_pb.js";
import { apiKeyTenantEnv, newApiKey, uniqueTenant } from "../support/auth-fixtures.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

/** The typed error a call fails with (and a test failure if it succeeds). */
const failure = (call: Promise<unknown>): Promise<ReceiptsError> =>
  call.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (error: unknown) => ReceiptsError.from(error),
  );

/** A client whose calls reach these handlers in memory, through the package's interceptors. */
function clientOf(
  receipts: Partial<ServiceImpl<typeof ReadReceiptService>>,
  membership: Partial<ServiceImpl<typeof MembershipService>> = {},
  options: Partial<ReceiptsClientOptions> = {},
) {
  return buildReceiptsClient(
    { baseUrl: "http://in-memory", ...options } as ReceiptsClientOptions,
    (_, interceptors) =>
      createRouterTransport(
        ({ service }) => {
          service(ReadReceiptService, receipts);
          service(MembershipService, membership);
        },
        { transport: { interceptors } },
      ),
  );
}

/** Fails the first `failures` calls with `error`, then answers. */
function flaky<T>(failures: number, error: () => ConnectError, answer: () => T) {
  const calls: number[] = [];
  return {
    calls,
    handler: () => {
      calls.push(performance.now());
      if (calls.length <= failures) throw error();
      return answer();
    },
  };
}

const unavailable = (retryAfterMs?: number) => () =>
  new ConnectError(
    "shutting down",
    Code.Unavailable,
    retryAfterMs === undefined ? undefined : { "retry-after-ms": String(retryAfterMs) },
  );

describe("the retry interceptor", () => {
  it("retries SendReceipts on UNAVAILABLE until it is served", async () => {
    const send = flaky(2, unavailable(), () => create(SendReceiptsResponseSchema));
    const client = clientOf({ sendReceipts: send.handler });
    await client.receipts.sendReceipts({ conversationId: "c", readerId: "r", messageIds: ["m"] });
    expect(send.calls).toHaveLength(3);
  });

  it("asks the token provider again for every attempt, so a renewed token is sent", async () => {
    const seen: (string | null)[] = [];
    let issued = 0;
    const client = clientOf(
      {
        getReceipts: (_request, context) => {
          seen.push(context.requestHeader.get("authorization"));
          if (seen.length === 1) throw unavailable()();
          return create(GetReceiptsResponseSchema);
        },
      },
      {},
      { tokenProvider: async () => `token-${++issued}` },
    );
    await client.receipts.getReceipts({ conversationId: "c", messageIds: ["m"] });
    expect(seen).toEqual(["Bearer token-1", "Bearer token-2"]);
  });

  it("waits at least what retry-after-ms asks", async () => {
    const get = flaky(1, unavailable(300), () => create(GetReceiptsResponseSchema));
    const client = clientOf({ getReceipts: get.handler });
    await client.receipts.getReceipts({ conversationId: "c", messageIds: ["m"] });
    expect(get.calls).toHaveLength(2);
    expect((get.calls[1] ?? 0) - (get.calls[0] ?? 0)).toBeGreaterThanOrEqual(295);
  });

  it("takes the delay of a google.rpc.RetryInfo detail when there is no header", async () => {
    const get = flaky(
      1,
      () =>
        new ConnectError("slow down", Code.ResourceExhausted, undefined, [
          { desc: RetryInfoSchema, value: { retryDelay: { seconds: 0n, nanos: 250_000_000 } } },
        ]),
      () => create(GetReceiptsResponseSchema),
    );
    const client = clientOf({ getReceipts: get.handler });
    await client.receipts.getReceipts({ conversationId: "c", messageIds: ["m"] });
    expect((get.calls[1] ?? 0) - (get.calls[0] ?? 0)).toBeGreaterThanOrEqual(245);
  });

  it("does not retry RESOURCE_EXHAUSTED without a retry hint (a request too large stays too large)", async () => {
    const get = flaky(
      5,
      () => new ConnectError("too large", Code.ResourceExhausted),
      () => create(GetReceiptsResponseSchema),
    );
    const client = clientOf({ getReceipts: get.handler });
    const error = await client.receipts
      .getReceipts({ conversationId: "c", messageIds: ["m"] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReceiptsError);
    expect(get.calls).toHaveLength(1);
  });

  it("never retries a call outside the safe list (AddMembers), nor other codes", async () => {
    const add = flaky(1, unavailable(), () => ({ addedCount: 1 }));
    const client = clientOf(
      {
        getReceipts: () => {
          throw new ConnectError("no", Code.NotFound);
        },
      },
      { addMembers: add.handler },
    );
    await expect(
      client.membership.addMembers({ groupId: "g", userIds: ["u"] }),
    ).rejects.toMatchObject({ code: Code.Unavailable });
    expect(add.calls).toHaveLength(1);
    await expect(
      client.receipts.getReceipts({ conversationId: "c", messageIds: ["m"] }),
    ).rejects.toMatchObject({ code: Code.NotFound });
  });

  it("gives up at the call's deadline rather than wait past it", async () => {
    const get = flaky(1, unavailable(5_000), () => create(GetReceiptsResponseSchema));
    const client = clientOf({ getReceipts: get.handler });
    const started = performance.now();
    const error = await client.receipts
      .getReceipts({ conversationId: "c", messageIds: ["m"] }, { timeoutMs: 200 })
      .catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(2_000);
    // connect answers the deadline itself, outside the interceptors; ReceiptsError.from types it.
    expect(ReceiptsError.from(error).code).toBe(Code.DeadlineExceeded);
    expect(get.calls).toHaveLength(1);
  });

  it("stops retrying once the budget is spent, and earns it back with successes", async () => {
    let failing = true;
    const calls: number[] = [];
    const budget = new RetryBudget({ maxTokens: 4, tokensPerSuccess: 1 });
    const client = clientOf(
      {
        getReceipts: () => {
          calls.push(1);
          if (failing) throw unavailable()();
          return create(GetReceiptsResponseSchema);
        },
      },
      {},
      { retry: { budget, firstDelayMs: 1, maxDelayMs: 1 } },
    );
    const call = () =>
      client.receipts
        .getReceipts({ conversationId: "c", messageIds: ["m"] })
        .catch(() => undefined);
    // Tokens 4 → 3 (retry) → 2 (no retry: half or less left): two attempts, then one per call.
    await call();
    expect(calls).toHaveLength(2);
    await call();
    expect(calls).toHaveLength(3);
    expect(budget.tokens).toBe(1);
    failing = false;
    for (let i = 0; i < 5; i++) await call();
    expect(budget.tokens).toBe(4);
    failing = true;
    calls.length = 0;
    await call();
    expect(calls).toHaveLength(2);
  });

  it("backs off with full jitter: uniform below a cap that doubles up to its maximum", () => {
    const options = { firstDelayMs: 100, maxDelayMs: 1_000 };
    expect(
      [1, 2, 3, 4, 5].map((attempt) =>
        backoffDelayMs(attempt, { ...options, random: () => 0.999999 }),
      ),
    ).toEqual([99, 199, 399, 799, 999]);
    expect(backoffDelayMs(3, { ...options, random: () => 0 })).toBe(0);
    const draws = Array.from({ length: 2_000 }, () => backoffDelayMs(4, options));
    expect(Math.min(...draws)).toBeLessThan(100);
    expect(Math.max(...draws)).toBeGreaterThan(700);
  });
});

describe("the client package against the real service", () => {
  const tenant = { id: uniqueTenant("client-retry"), key: newApiKey() };
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      // One call, then two a second: a burst of two calls has its second refused with a delay.
      RECEIPTS_TENANTS: apiKeyTenantEnv(tenant, { tenantRequestsPerSecond: 2, tenantBurst: 1 }),
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("rides out a rate limit: the refused call waits its retry-after-ms and is served", async () => {
    for (const protocol of ["grpc", "connect", "grpc-web"] as const) {
      const client = createReceiptsClient({
        baseUrl: server.baseUrl,
        protocol,
        apiKey: tenant.key,
      });
      const withoutRetry = createReceiptsClient({
        baseUrl: server.baseUrl,
        protocol,
        apiKey: tenant.key,
        retry: false,
      });
      await new Promise((resolve) => setTimeout(resolve, 600));
      await client.membership.listMembers({ groupId: "g" });
      const refused = await failure(withoutRetry.membership.listMembers({ groupId: "g" }));
      expect(refused, protocol).toBeInstanceOf(ReceiptsError);
      expect(refused.code).toBe(Code.ResourceExhausted);
      expect(refused.retryAfterMs).toBeGreaterThan(0);
      const started = performance.now();
      await client.membership.listMembers({ groupId: "g" });
      expect(performance.now() - started, protocol).toBeGreaterThanOrEqual(100);
    }
  });

  it("names the field at fault from the google.rpc.BadRequest detail, over every protocol", async () => {
    for (const protocol of ["grpc", "connect", "grpc-web"] as const) {
      await new Promise((resolve) => setTimeout(resolve, 600));
      const client = createReceiptsClient({
        baseUrl: server.baseUrl,
        protocol,
        apiKey: tenant.key,
      });
      const error = await failure(
        client.receipts.getReceipts({ conversationId: "c", messageIds: ["m", ""] }),
      );
      expect(error, protocol).toBeInstanceOf(ReceiptsError);
      expect(error.code).toBe(Code.InvalidArgument);
      expect(error.codeName).toBe("invalid_argument");
      expect(error.field).toBe("message_ids[1]");
      expect(error.fieldViolations).toEqual([
        { field: "message_ids[1]", description: expect.any(String) },
      ]);
      // Still a ConnectError for code written against connect.
      expect(ConnectError.from(error)).toBe(error);
    }
  });

  it("refuses options it cannot honour, saying which", () => {
    expect(() => createReceiptsClient({ baseUrl: "localhost:8080" })).toThrow(
      /baseUrl localhost:8080/,
    );
    expect(() =>
      createReceiptsClient({ baseUrl: server.baseUrl, apiKey: "k", userToken: "t" } as never),
    ).toThrow(/one of apiKey, userToken and tokenProvider/);
  });
});
