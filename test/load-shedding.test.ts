import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { ConfigError, loadConfig } from "../src/config.js";
import { retryDelayMs } from "./support/error-details.js";
import {
  type HeldStore,
  type OpsTestServer,
  sample,
  scrape,
  seedGroupG,
  startHeldOpsServer,
} from "./support/ops-harness.js";

/**
 * RECEIPTS_MAX_CALLS_IN_FLIGHT: with two calls held inside the store, a third
 * is refused at once with UNAVAILABLE and a retry delay, writes nothing, and
 * the instance serves again as soon as the held calls finish.
 */
describe("load shedding (RECEIPTS_MAX_CALLS_IN_FLIGHT)", () => {
  let held: HeldStore;
  let server: OpsTestServer;
  const transport = () => createGrpcTransport({ baseUrl: server.baseUrl });
  const receipts = () => createClient(ReadReceiptService, transport());
  const readCount = async (messageId: string) =>
    (await receipts().getReceipts({ conversationId: "g", messageIds: [messageId] })).receipts[0]
      ?.readCount;

  beforeAll(async () => {
    ({ server, held } = await startHeldOpsServer({ RECEIPTS_MAX_CALLS_IN_FLIGHT: "2" }));
    await seedGroupG(transport(), ["r1", "r2", "r3"], ["m1", "m2", "m3"]);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("refuses the call past the bound at once, writing nothing, then serves again", async () => {
    const first = held.hold("getMessages");
    const firstCall = receipts().sendReceipts({
      conversationId: "g",
      readerId: "r1",
      messageIds: ["m1"],
    });
    await first.reached;
    const second = held.hold("getMessages");
    const secondCall = receipts().getReceipts({ conversationId: "g", messageIds: ["m1"] });
    await second.reached;

    const refusedAt = performance.now();
    const refused = await receipts()
      .sendReceipts({ conversationId: "g", readerId: "r2", messageIds: ["m2"] })
      .then(
        () => undefined,
        (error: unknown) => ConnectError.from(error),
      );
    expect(refused?.code).toBe(Code.Unavailable);
    expect(refused?.metadata.get("retry-after-ms")).toBe("200");
    expect(retryDelayMs(refused)).toBe(200);
    // Refused before any work: not queued behind the held calls.
    expect(performance.now() - refusedAt).toBeLessThan(5_000);
    // Over Connect too, with the same code.
    const overConnect = await createClient(
      ReadReceiptService,
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
    )
      .getReceipts({ conversationId: "g", messageIds: ["m3"] })
      .catch((error: unknown) => ConnectError.from(error));
    expect(overConnect).toBeInstanceOf(ConnectError);
    expect((overConnect as ConnectError).code).toBe(Code.Unavailable);
    // Health still answers while the instance is full.
    const health = await createClient(Health, transport()).check({ service: "" });
    expect(health.status).toBeGreaterThan(0);

    first.release();
    second.release();
    expect((await firstCall).receipts[0]?.readCount).toBe(1);
    expect((await secondCall).receipts).toHaveLength(1);
    // The refused receipt was never recorded; sent again, it counts.
    expect(await readCount("m2")).toBe(0);
    await receipts().sendReceipts({ conversationId: "g", readerId: "r2", messageIds: ["m2"] });
    expect(await readCount("m2")).toBe(1);
    expect(
      sample(await scrape(server.baseUrl), "receipts_rate_limit_rejections_total", {
        limit: "calls_in_flight",
      }),
    ).toBe(2);
  });

  it("defaults to 512 and reports a bad value by name", () => {
    expect(loadConfig({}).maxCallsInFlight).toBe(512);
    expect(() => loadConfig({ RECEIPTS_MAX_CALLS_IN_FLIGHT: "0" })).toThrow(ConfigError);
    const error = (() => {
      try {
        loadConfig({ RECEIPTS_MAX_CALLS_IN_FLIGHT: "lots" });
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.join("\n")).toContain("RECEIPTS_MAX_CALLS_IN_FLIGHT=");
  });
});
