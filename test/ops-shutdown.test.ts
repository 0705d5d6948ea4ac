import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../gen/grpc/health/v1/health_pb.js";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import {
  ConversationType,
  ReadFilter,
  ReadReceiptService,
  type WatchReceiptsResponse,
} from "../gen/receipts/v1/receipts_pb.js";
import { buildService, type ServiceProcess, startBuiltService } from "./support/built-service.js";
import { minutes, users } from "./support/fixtures.js";
import { type HeldStore, type OpsTestServer, startHeldOpsServer } from "./support/ops-harness.js";

const asConnectError = (error: unknown): ConnectError => ConnectError.from(error);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function setUpGroup(baseUrl: string, readers: readonly string[]): Promise<void> {
  const transport = createGrpcTransport({ baseUrl });
  await createClient(MembershipService, transport).addMembers({
    groupId: "g",
    userIds: ["s", ...readers],
    joinedAt: timestampFromMs(minutes(0)),
  });
  await createClient(ReadReceiptService, transport).trackMessages({
    messages: [
      {
        conversationId: "g",
        conversationType: ConversationType.GROUP,
        messageId: "m",
        senderId: "s",
        sentAt: timestampFromMs(minutes(1)),
      },
    ],
  });
}

describe("graceful shutdown in process", () => {
  let held: HeldStore;
  let server: OpsTestServer;
  const start = async (graceSeconds: number, delaySeconds = 0) => {
    ({ server, held } = await startHeldOpsServer({
      RECEIPTS_SHUTDOWN_GRACE_SECONDS: String(graceSeconds),
      RECEIPTS_SHUTDOWN_DELAY_SECONDS: String(delaySeconds),
    }));
    await setUpGroup(server.baseUrl, ["r1", "r2"]);
  };
  afterAll(async () => {
    await server?.stop();
  });

  it("lets a unary call in flight finish, refuses new calls and ends streams with UNAVAILABLE and a resume token", async () => {
    // The delay keeps the port open while draining, so the new call below is refused by the
    // service itself; with no delay it would race the port closing (refused or reset).
    await start(5, 1);
    const client = createClient(
      ReadReceiptService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    );
    const stream = client.watchReceipts({ conversationIds: ["g"] })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.update.case).toBe("heartbeat");
    const hold = held.hold("readCounts");
    const inFlight = client.getReceipts({ conversationId: "g", messageIds: ["m"] });
    await hold.reached;

    const began = performance.now();
    const stopped = server.stop();
    const ended = asConnectError(await stream.next().catch((error: unknown) => error));
    expect(ended.code).toBe(Code.Unavailable);
    expect(ended.metadata.get("resume-token")).toMatch(/\S/);
    const refused = await createClient(
      ReadReceiptService,
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
    )
      .getReceipts({ conversationId: "g", messageIds: ["m"] })
      .catch(asConnectError);
    expect((refused as ConnectError).code).toBe(Code.Unavailable);

    await sleep(200);
    hold.release();
    const answered = await inFlight;
    expect(answered.receipts[0]).toMatchObject({ messageId: "m", readCount: 0, unreadCount: 2 });
    await stopped;
    expect(performance.now() - began).toBeLessThan(5_000);
    const afterClose = await client
      .getReceipts({ conversationId: "g", messageIds: ["m"] })
      .catch(asConnectError);
    expect((afterClose as ConnectError).code).toBe(Code.Unavailable);
  });

  it("cuts off a call still running when the grace period ends, and stop() returns then", async () => {
    await start(1);
    const hold = held.hold("readCounts");
    const inFlight = createClient(
      ReadReceiptService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    )
      .getReceipts({ conversationId: "g", messageIds: ["m"] })
      .catch(asConnectError);
    await hold.reached;
    const began = performance.now();
    await server.stop();
    const took = performance.now() - began;
    // Calls still running 250 ms before the end of the grace period are answered then.
    expect(took).toBeGreaterThanOrEqual(700);
    expect(took).toBeLessThan(3_000);
    expect(((await inFlight) as ConnectError).code).toBe(Code.Unavailable);
    hold.release();
  });
});

describe("graceful shutdown of the built service on SIGTERM", () => {
  let build: ReturnType<typeof buildService>;
  let dataDir: string;
  const children: ChildProcess[] = [];

  /** Starts the built service as `npm start` does; resolves once it logs its port. */
  const startService = async (env: Record<string, string>): Promise<ServiceProcess> => {
    const service = await startBuiltService(build.dir, { RECEIPTS_DATA_DIR: dataDir, ...env });
    children.push(service.child);
    return service;
  };

  beforeAll(() => {
    build = buildService("ops-shutdown");
    dataDir = mkdtempSync(join(tmpdir(), "receipts-ops-shutdown-"));
  }, 120_000);
  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
    build?.remove();
  });

  it("turns not ready first, refuses new calls, ends streams resumably, exits 0, and loses no acknowledged receipt", async () => {
    const readers = users("r", 120);
    const first = await startService({
      RECEIPTS_SHUTDOWN_DELAY_SECONDS: "1",
      RECEIPTS_SHUTDOWN_GRACE_SECONDS: "5",
    });
    await setUpGroup(first.baseUrl, readers);
    const health = createClient(Health, createGrpcTransport({ baseUrl: first.baseUrl }));
    const healthWatch = health.watch({})[Symbol.asyncIterator]();
    expect((await healthWatch.next()).value?.status).toBe(ServingStatus.SERVING);
    expect((await fetch(`${first.baseUrl}/readyz`)).status).toBe(200);
    // The composition root adds the process metrics to the app's registry.
    expect(await (await fetch(`${first.baseUrl}/metrics`)).text()).toContain(
      "nodejs_eventloop_lag_seconds",
    );

    // A watcher of the group, collecting every receipt until its stream ends.
    const seenBefore = new Set<string>();
    const watcher = createClient(
      ReadReceiptService,
      createGrpcTransport({ baseUrl: first.baseUrl }),
    );
    const watchEnded = (async () => {
      try {
        for await (const update of watcher.watchReceipts({ conversationIds: ["g"] })) {
          if (update.update.case === "receipt") seenBefore.add(update.update.value.readerId);
        }
        return undefined;
      } catch (error) {
        return asConnectError(error);
      }
    })();

    // Readers acknowledge concurrently; SIGTERM lands in the middle.
    const sender = createClient(
      ReadReceiptService,
      createGrpcTransport({ baseUrl: first.baseUrl }),
    );
    const acknowledged: string[] = [];
    const failures: ConnectError[] = [];
    const queue = [...readers];
    let signalled = false;
    const exited = once(first.child, "exit");
    const worker = async () => {
      for (let reader = queue.shift(); reader !== undefined; reader = queue.shift()) {
        try {
          await sender.sendReceipts(
            { conversationId: "g", readerId: reader, messageIds: ["m"] },
            { timeoutMs: 5_000 },
          );
          acknowledged.push(reader);
        } catch (error) {
          failures.push(asConnectError(error));
        }
        if (!signalled && acknowledged.length >= 30) {
          signalled = true;
          first.child.kill("SIGTERM");
        }
      }
    };
    const sending = Promise.all([worker(), worker(), worker(), worker()]);

    // Health watchers hear NOT_SERVING; during the delay probes still get answers.
    expect((await healthWatch.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    expect((await fetch(`${first.baseUrl}/readyz`)).status).toBe(503);
    expect((await fetch(`${first.baseUrl}/healthz`)).status).toBe(200);
    expect((await health.check({})).status).toBe(ServingStatus.NOT_SERVING);
    await sending;
    expect(signalled).toBe(true);
    expect(acknowledged.length).toBeGreaterThanOrEqual(30);
    expect(failures.length).toBeGreaterThan(0);
    expect(new Set(failures.map((f) => Code[f.code]))).toEqual(new Set(["Unavailable"]));

    const streamError = await watchEnded;
    expect(streamError?.code).toBe(Code.Unavailable);
    const resumeToken = streamError?.metadata.get("resume-token") ?? "";
    expect(resumeToken).not.toBe("");
    const [code] = await exited;
    expect(code).toBe(0);

    // The restarted service has every acknowledged receipt, and the token resumes the stream.
    const second = await startService({});
    try {
      const client = createClient(
        ReadReceiptService,
        createGrpcTransport({ baseUrl: second.baseUrl }),
      );
      const read = await client.listReadMembers({
        conversationId: "g",
        messageId: "m",
        filter: ReadFilter.READ,
        pageSize: 1_000,
      });
      const readers = new Set(read.members.map((m) => m.userId));
      expect(acknowledged.filter((reader) => !readers.has(reader))).toEqual([]);

      const replayed = new Set<string>();
      const abort = new AbortController();
      for await (const update of client.watchReceipts(
        { conversationIds: ["g"], resumeToken },
        { signal: abort.signal },
      ) as AsyncIterable<WatchReceiptsResponse>) {
        // Replay comes first; the first heartbeat marks the switch to live updates.
        if (update.update.case === "heartbeat") break;
        if (update.update.case === "receipt") replayed.add(update.update.value.readerId);
      }
      abort.abort();
      const watched = new Set([...seenBefore, ...replayed]);
      expect(acknowledged.filter((reader) => !watched.has(reader))).toEqual([]);
    } finally {
      const done = once(second.child, "exit");
      second.child.kill("SIGTERM");
      expect((await done)[0]).toBe(0);
    }
  });
});
