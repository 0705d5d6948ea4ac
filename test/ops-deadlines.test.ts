import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReadFilter, ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { ConfigError, loadConfig } from "../src/config.js";
import {
  eventually,
  type HeldStore,
  type Hold,
  type OpsTestServer,
  sample,
  scrape,
  seedGroupG,
  startHeldOpsServer,
} from "./support/ops-harness.js";

const handled = (method: string, code: string) => ({
  grpc_service: "receipts.v1.ReadReceiptService",
  grpc_method: method,
  grpc_type: "unary",
  grpc_code: code,
});
const storeCalls = (operation: string) => ({ operation, outcome: "ok" });

/**
 * How many calls of a method the server ended early. At a deadline the client
 * also drops the call (RST_STREAM, or closing an HTTP/1.1 connection), which
 * may reach the server before its own deadline timer fires: CANCELED then.
 */
async function endedEarly(baseUrl: string, method: string): Promise<number> {
  const text = await scrape(baseUrl);
  return (
    sample(text, "grpc_server_handled_total", handled(method, "DeadlineExceeded")) +
    sample(text, "grpc_server_handled_total", handled(method, "Canceled"))
  );
}

const storeCount = async (baseUrl: string, operation: string): Promise<number> =>
  sample(await scrape(baseUrl), "receipts_store_operation_seconds_count", storeCalls(operation));

/**
 * Lets the held store call return into its handler (whose call the server has
 * already ended), and waits until it has: a handler that ignored its signal
 * would write within a few milliseconds after that.
 */
async function releaseIntoHandler(baseUrl: string, hold: Hold, operation: string): Promise<void> {
  const before = await storeCount(baseUrl, operation);
  hold.release();
  await eventually(async () => (await storeCount(baseUrl, operation)) === before + 1);
  await new Promise((resolve) => setTimeout(resolve, 100));
}

/**
 * A call's deadline or cancel reaches the handler's signal: the server answers
 * at once, and the domain stops before its next store call, so a call held
 * inside the store past its deadline writes nothing once it is let go.
 */
describe("deadlines and cancellation end to end", () => {
  let held: HeldStore;
  let server: OpsTestServer;
  const grpcClient = () =>
    createClient(ReadReceiptService, createGrpcTransport({ baseUrl: server.baseUrl }));
  const readCount = async (messageId: string) =>
    (await grpcClient().getReceipts({ conversationId: "g", messageIds: [messageId] })).receipts[0]
      ?.readCount;

  beforeAll(async () => {
    ({ server, held } = await startHeldOpsServer());
    const transport = createGrpcTransport({ baseUrl: server.baseUrl });
    await seedGroupG(transport, ["r1", "r2"], ["m1", "m2"]);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("MarkConversationRead past its deadline: DEADLINE_EXCEEDED, and nothing is marked", async () => {
    const hold = held.hold("listMessagesSentBetween");
    const call = grpcClient()
      .markConversationRead({ conversationId: "g", readerId: "r1" }, { timeoutMs: 300 })
      .catch((error: unknown) => ConnectError.from(error));
    await hold.reached;
    const error = await call;
    expect((error as ConnectError).code).toBe(Code.DeadlineExceeded);
    // The server ended the call at the deadline although its handler still waits on the store.
    await eventually(async () => (await endedEarly(server.baseUrl, "MarkConversationRead")) === 1);
    // Once the store answers, the handler stops at its signal: nothing is written.
    await releaseIntoHandler(server.baseUrl, hold, "listMessagesSentBetween");
    expect(await readCount("m1")).toBe(0);
    expect(await readCount("m2")).toBe(0);
    const text = await scrape(server.baseUrl);
    expect(
      sample(text, "receipts_store_operation_seconds_count", storeCalls("insertReceipts")),
    ).toBe(0);
    expect(
      sample(text, "receipts_store_operation_seconds_count", storeCalls("advanceHorizon")),
    ).toBe(0);
  });

  it("MarkConversationRead cancelled by its client: CANCELED on the server, nothing is marked", async () => {
    const canceledBefore = sample(
      await scrape(server.baseUrl),
      "grpc_server_handled_total",
      handled("MarkConversationRead", "Canceled"),
    );
    const hold = held.hold("listMessagesSentBetween");
    const abort = new AbortController();
    const call = grpcClient()
      .markConversationRead({ conversationId: "g", readerId: "r2" }, { signal: abort.signal })
      .catch((error: unknown) => ConnectError.from(error));
    await hold.reached;
    abort.abort();
    expect(((await call) as ConnectError).code).toBe(Code.Canceled);
    await eventually(
      async () =>
        sample(
          await scrape(server.baseUrl),
          "grpc_server_handled_total",
          handled("MarkConversationRead", "Canceled"),
        ) ===
        canceledBefore + 1,
    );
    await releaseIntoHandler(server.baseUrl, hold, "listMessagesSentBetween");
    expect(await readCount("m1")).toBe(0);
    expect(
      sample(
        await scrape(server.baseUrl),
        "receipts_store_operation_seconds_count",
        storeCalls("insertReceipts"),
      ),
    ).toBe(0);
  });

  it("ListReadMembers past its deadline over Connect/HTTP 1.1: DEADLINE_EXCEEDED, stopped before listing", async () => {
    const hold = held.hold("getMessages");
    const call = createClient(
      ReadReceiptService,
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
    )
      .listReadMembers(
        { conversationId: "g", messageId: "m1", filter: ReadFilter.UNREAD },
        { timeoutMs: 300 },
      )
      .catch((error: unknown) => ConnectError.from(error));
    await hold.reached;
    expect(((await call) as ConnectError).code).toBe(Code.DeadlineExceeded);
    await eventually(async () => (await endedEarly(server.baseUrl, "ListReadMembers")) === 1);
    await releaseIntoHandler(server.baseUrl, hold, "getMessages");
    const text = await scrape(server.baseUrl);
    expect(sample(text, "grpc_server_handled_total", handled("ListReadMembers", "OK"))).toBe(0);
    expect(
      sample(text, "receipts_store_operation_seconds_count", storeCalls("listUnreadMembers")),
    ).toBe(0);
  });

  it("with time to spare the same calls succeed", async () => {
    const marked = await grpcClient().markConversationRead(
      { conversationId: "g", readerId: "r1" },
      { timeoutMs: 10_000 },
    );
    expect(marked.markedCount).toBe(2);
    const unread = await grpcClient().listReadMembers(
      { conversationId: "g", messageId: "m1", filter: ReadFilter.UNREAD },
      { timeoutMs: 10_000 },
    );
    expect(unread.members.map((m) => m.userId)).toEqual(["r2"]);
  });
});

/**
 * RECEIPTS_MAX_CALL_SECONDS: a unary call gets at most that long whatever its client asked,
 * and stops as at its own deadline; streams are not limited.
 */
describe("the service's own limit on a call (RECEIPTS_MAX_CALL_SECONDS)", () => {
  let held: HeldStore;
  let server: OpsTestServer;
  const grpcClient = () =>
    createClient(ReadReceiptService, createGrpcTransport({ baseUrl: server.baseUrl }));

  beforeAll(async () => {
    ({ server, held } = await startHeldOpsServer({ RECEIPTS_MAX_CALL_SECONDS: "1" }));
    await seedGroupG(createGrpcTransport({ baseUrl: server.baseUrl }), ["r1", "r2"], ["m1"]);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("answers a call without a deadline DEADLINE_EXCEEDED at the limit, and it writes nothing more", async () => {
    const hold = held.hold("listMessagesSentBetween");
    const began = performance.now();
    const call = grpcClient()
      .markConversationRead({ conversationId: "g", readerId: "r1" })
      .catch((error: unknown) => ConnectError.from(error));
    await hold.reached;
    const error = (await call) as ConnectError;
    const took = performance.now() - began;
    expect(error.code).toBe(Code.DeadlineExceeded);
    expect(error.rawMessage).toMatch(/at most 1000 ms/);
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(3_000);
    await releaseIntoHandler(server.baseUrl, hold, "listMessagesSentBetween");
    const { receipts } = await grpcClient().getReceipts({
      conversationId: "g",
      messageIds: ["m1"],
    });
    expect(receipts[0]?.readCount).toBe(0);
    expect(
      sample(
        await scrape(server.baseUrl),
        "receipts_store_operation_seconds_count",
        storeCalls("advanceHorizon"),
      ),
    ).toBe(0);
  });

  it("lets a shorter client deadline end the call first", async () => {
    const hold = held.hold("listMessagesSentBetween");
    const began = performance.now();
    const call = grpcClient()
      .markConversationRead({ conversationId: "g", readerId: "r2" }, { timeoutMs: 200 })
      .catch((error: unknown) => ConnectError.from(error));
    await hold.reached;
    expect(((await call) as ConnectError).code).toBe(Code.DeadlineExceeded);
    expect(performance.now() - began).toBeLessThan(900);
    await releaseIntoHandler(server.baseUrl, hold, "listMessagesSentBetween");
  });

  it("keeps a WatchReceipts stream open past the limit, still delivering", async () => {
    const client = grpcClient();
    const stream = client.watchReceipts({ conversationIds: ["g"] })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.update.case).toBe("heartbeat");
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await client.sendReceipts({ conversationId: "g", readerId: "r2", messageIds: ["m1"] });
    const update = (await stream.next()).value;
    expect(update?.update.case).toBe("receipt");
    await stream.return?.();
  });

  it("is 30 s by default and refuses what is not a whole number of seconds from 1 to 3,600", () => {
    expect(loadConfig({}).maxCallMs).toBe(30_000);
    for (const bad of ["0", "3601", "soon"]) {
      expect(() => loadConfig({ RECEIPTS_MAX_CALL_SECONDS: bad })).toThrow(ConfigError);
    }
  });
});
