import { once } from "node:events";
import * as http2 from "node:http2";
import * as net from "node:net";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import { ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { buildService, type ServiceProcess, startBuiltService } from "./support/built-service.js";
import {
  type OpsTestServer,
  sample,
  scrape,
  seedGroupG,
  startOpsServer,
} from "./support/ops-harness.js";

/**
 * Slow and abandoned requests are bounded: a unary request body that is not in within
 * RECEIPTS_MAX_CALL_SECONDS is refused (a stream whose request was read is not), headers get
 * at most as long (10 s at most), connections and requests per client address are capped, and
 * each refusal is counted. Clients come from distinct loopback addresses (127.0.0.x), as
 * distinct machines would.
 */

const getReceiptsPath = "/receipts.v1.ReadReceiptService/GetReceipts";

/** A server in this process or another. */
interface Reachable {
  readonly baseUrl: string;
}

const portOf = (server: Reachable): number => Number(new URL(server.baseUrl).port);

/** A TCP connection to the server from `from` (a loopback address). */
function connectFrom(server: Reachable, from: string): net.Socket {
  const socket = net.connect({ host: "127.0.0.1", port: portOf(server), localAddress: from });
  socket.on("error", () => {});
  return socket;
}

/** An HTTP/2 session to the server from `from`. */
function sessionFrom(server: Reachable, from: string): http2.ClientHttp2Session {
  const session = http2.connect(server.baseUrl, {
    createConnection: () => connectFrom(server, from),
  });
  session.on("error", () => {});
  return session;
}

/** A gRPC GetReceipts call whose body the caller writes (or does not). */
function grpcCall(session: http2.ClientHttp2Session): http2.ClientHttp2Stream {
  const stream = session.request({
    ":method": "POST",
    ":path": getReceiptsPath,
    "content-type": "application/grpc",
    te: "trailers",
  });
  stream.on("error", () => {});
  return stream;
}

function grpcFrom(server: Reachable, from: string): Transport {
  return createGrpcTransport({
    baseUrl: server.baseUrl,
    nodeOptions: { createConnection: () => connectFrom(server, from) },
  });
}

/** Resolves what the socket received until it closed, or until `ms` passed (then `open`). */
async function readUntilClosed(
  socket: net.Socket,
  ms: number,
): Promise<{ text: string; closed: boolean; afterMs: number }> {
  const started = Date.now();
  let text = "";
  socket.on("data", (chunk: Buffer) => {
    text += chunk.toString("latin1");
  });
  const closed = await Promise.race([
    once(socket, "close").then(() => true),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms)),
  ]);
  return { text, closed, afterMs: Date.now() - started };
}

const refusals = async (server: Reachable, limit: string): Promise<number> =>
  sample(await scrape(server.baseUrl), "receipts_rate_limit_rejections_total", { limit });

describe("request time limits (RECEIPTS_MAX_CALL_SECONDS=1)", () => {
  let server: OpsTestServer;
  const opened: { destroy(): void }[] = [];

  beforeAll(async () => {
    server = await startOpsServer({
      env: { RECEIPTS_MAX_CALL_SECONDS: "1", RECEIPTS_WATCH_HEARTBEAT_SECONDS: "1" },
    });
  });
  afterEach(() => {
    for (const connection of opened.splice(0)) connection.destroy();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("answers 40 HTTP/2 unary calls whose body never finishes DEADLINE_EXCEEDED and closes them", async () => {
    const session = sessionFrom(server, "127.0.0.1");
    opened.push(session);
    const started = Date.now();
    const outcomes = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const stream = grpcCall(session);
        let status: string | undefined;
        const grpcStatus = (headers: http2.IncomingHttpHeaders) => {
          const value = headers["grpc-status"];
          if (typeof value === "string") status = value;
        };
        stream.on("response", grpcStatus);
        stream.on("trailers", grpcStatus);
        stream.resume();
        // Three bytes of a five-byte envelope header, and nothing more.
        stream.write(Buffer.from([0, 0, 0]));
        await once(stream, "close");
        return { status, afterMs: Date.now() - started };
      }),
    );
    for (const outcome of outcomes) {
      expect(outcome.status).toBe(String(Code.DeadlineExceeded));
      expect(outcome.afterMs).toBeGreaterThanOrEqual(900);
      expect(outcome.afterMs).toBeLessThan(3_000);
    }
    expect(await refusals(server, "request_body_time")).toBeGreaterThanOrEqual(40);
  });

  it("answers an HTTP/1.1 call that sent 6 of 1,000 body bytes deadline_exceeded and closes the connection", async () => {
    const socket = connectFrom(server, "127.0.0.1");
    opened.push(socket);
    await once(socket, "connect");
    socket.write(
      `POST ${getReceiptsPath} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"con`,
    );
    socket.write("v");
    const { text, closed, afterMs } = await readUntilClosed(socket, 4_000);
    expect(closed).toBe(true);
    expect(afterMs).toBeLessThan(3_000);
    expect(text).toMatch(/^HTTP\/1\.1 \d{3}/);
    expect(text).toContain('"code":"deadline_exceeded"');
  });

  it("closes an HTTP/1.1 connection whose headers trickle in", async () => {
    const socket = connectFrom(server, "127.0.0.1");
    opened.push(socket);
    await once(socket, "connect");
    socket.write(`POST ${getReceiptsPath} HTTP/1.1\r\nHost: x\r\n`);
    const trickle = setInterval(() => socket.write("X-Slow: y\r\n"), 200);
    try {
      const { text, closed, afterMs } = await readUntilClosed(socket, 4_000);
      expect(closed).toBe(true);
      expect(afterMs).toBeLessThan(3_000);
      expect(text).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      clearInterval(trickle);
    }
  });

  it("closes a connection that never says which protocol it speaks", async () => {
    const socket = connectFrom(server, "127.0.0.1");
    opened.push(socket);
    await once(socket, "connect");
    socket.write("PRI");
    const { closed, afterMs } = await readUntilClosed(socket, 4_000);
    expect(closed).toBe(true);
    expect(afterMs).toBeLessThan(3_000);
  });

  it("leaves WatchReceipts streams open past the limit once their request is read", async () => {
    for (const transport of [
      createGrpcTransport({ baseUrl: server.baseUrl }),
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
    ]) {
      const abort = new AbortController();
      const started = Date.now();
      let heartbeats = 0;
      try {
        for await (const message of createClient(ReadReceiptService, transport).watchReceipts(
          { conversationIds: ["g"] },
          { signal: abort.signal },
        )) {
          if (message.update.case === "heartbeat") heartbeats += 1;
          if (Date.now() - started > 2_500) break;
        }
      } finally {
        abort.abort();
      }
      expect(heartbeats).toBeGreaterThanOrEqual(2);
      expect(Date.now() - started).toBeGreaterThan(2_500);
    }
  });
});

describe("per-address caps (4 connections, 3 requests in flight)", () => {
  let server: OpsTestServer;
  beforeAll(async () => {
    server = await startOpsServer({
      env: { RECEIPTS_MAX_CONNECTIONS_PER_ADDRESS: "4", RECEIPTS_MAX_STREAMS_PER_ADDRESS: "3" },
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("closes a fifth connection from one address at once, and serves another address", async () => {
    const held = Array.from({ length: 4 }, () => connectFrom(server, "127.0.0.5"));
    try {
      await Promise.all(held.map((socket) => once(socket, "connect")));
      const fifth = connectFrom(server, "127.0.0.5");
      const { closed, text, afterMs } = await readUntilClosed(fifth, 2_000);
      expect(closed).toBe(true);
      expect(text).toBe("");
      expect(afterMs).toBeLessThan(1_000);
      expect(await refusals(server, "connections_per_address")).toBe(1);
      // Another address is not affected; a freed slot is usable again.
      await createClient(MembershipService, grpcFrom(server, "127.0.0.6")).listMembers({
        groupId: "g",
      });
      held[0]?.destroy();
      await new Promise((resolve) => setTimeout(resolve, 100));
      await createClient(MembershipService, grpcFrom(server, "127.0.0.5")).listMembers({
        groupId: "g",
      });
    } finally {
      for (const socket of held) socket.destroy();
    }
  });

  it("refuses a fourth open stream from one address with RESOURCE_EXHAUSTED and serves another address", async () => {
    const abort = new AbortController();
    const open = async (transport: Transport) => {
      const stream = createClient(ReadReceiptService, transport)
        .watchReceipts({ conversationIds: ["g"] }, { signal: abort.signal })
        [Symbol.asyncIterator]();
      await stream.next();
      return stream;
    };
    try {
      // Two connections of one address, as two processes behind one NAT.
      const first = grpcFrom(server, "127.0.0.7");
      const second = grpcFrom(server, "127.0.0.7");
      await open(first);
      await open(first);
      await open(second);
      const refused = await open(second).then(
        () => undefined,
        (reason: unknown) => ConnectError.from(reason),
      );
      expect(refused?.code).toBe(Code.ResourceExhausted);
      expect(await refusals(server, "streams_per_address")).toBe(1);
      await open(grpcFrom(server, "127.0.0.8"));
    } finally {
      abort.abort();
    }
  });
});

describe("a slowloris attack", () => {
  // The service in a process of its own: the attack and the measuring client share this one.
  let build: ReturnType<typeof buildService>;
  let service: ServiceProcess;
  const server: Reachable = {
    get baseUrl() {
      return service.baseUrl;
    },
  };
  beforeAll(async () => {
    build = buildService("slow-clients");
    service = await startBuiltService(build.dir, {
      RECEIPTS_DATA_DIR: ":memory:",
      RECEIPTS_MAX_CALL_SECONDS: "2",
      RECEIPTS_MAX_CONNECTIONS_PER_ADDRESS: "40",
    });
    await seedGroupG(grpcFrom(server, "127.0.0.2"), ["r"], ["m1"]);
  });
  afterAll(async () => {
    service?.child.kill("SIGKILL");
    build?.remove();
  });

  /** p99 of the sequential GetReceipts from 127.0.0.2 that fit in `ms`, in ms. */
  async function p99(ms: number): Promise<number> {
    const client = createClient(ReadReceiptService, grpcFrom(server, "127.0.0.2"));
    await client.getReceipts({ conversationId: "g", messageIds: ["m1"] });
    const times: number[] = [];
    const until = performance.now() + ms;
    while (performance.now() < until) {
      const started = performance.now();
      await client.getReceipts({ conversationId: "g", messageIds: ["m1"] });
      times.push(performance.now() - started);
    }
    times.sort((x, y) => x - y);
    return times[Math.floor(times.length * 0.99)] ?? Number.NaN;
  }

  /**
   * Hundreds of connections from ten addresses, each trickling a byte at a time: HTTP/1.1
   * headers, HTTP/1.1 bodies and HTTP/2 bodies. Each is reopened when the server closes it,
   * until `stop`.
   */
  function attack(): { stop(): void; opened(): number } {
    let stopped = false;
    let opened = 0;
    const live = new Set<{ destroy(): void }>();
    const timers = new Set<NodeJS.Timeout>();
    const trickle = (write: () => void, gone: { destroy(): void }) => {
      const timer = setInterval(write, 1_000);
      timers.add(timer);
      return () => {
        clearInterval(timer);
        timers.delete(timer);
        live.delete(gone);
      };
    };
    const launch = (kind: number, from: string): void => {
      if (stopped) return;
      opened += 1;
      const again = () => setTimeout(() => launch(kind, from), 200);
      if (kind === 2) {
        const session = sessionFrom(server, from);
        live.add(session);
        const stream = grpcCall(session);
        stream.resume();
        const stop = trickle(() => stream.write(Buffer.from([0])), session);
        session.once("close", () => {
          stop();
          again();
        });
        stream.once("close", () => session.destroy());
        return;
      }
      const socket = connectFrom(server, from);
      live.add(socket);
      socket.once("connect", () => {
        socket.write(
          kind === 0
            ? `POST ${getReceiptsPath} HTTP/1.1\r\nHost: x\r\n`
            : `POST ${getReceiptsPath} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n`,
        );
      });
      const stop = trickle(() => socket.write(kind === 0 ? "X-Slow: y\r\n" : " "), socket);
      socket.once("close", () => {
        stop();
        again();
      });
    };
    for (let i = 0; i < 300; i++) launch(i % 3, `127.0.0.${20 + (i % 10)}`);
    return {
      opened: () => opened,
      stop() {
        stopped = true;
        for (const timer of timers) clearInterval(timer);
        for (const connection of live) connection.destroy();
      },
    };
  }

  it("leaves another client's GetReceipts p99 within 2x of normal", async () => {
    // Rounds of normal, then attacked, so that the load other processes put on this shared
    // machine weighs on both alike (medians of five); each attacked window outlasts the
    // server's 2-s limit.
    const normal: number[] = [];
    const attacked: number[] = [];
    let opened = 0;
    for (let round = 0; round < 5; round++) {
      normal.push(await p99(3_000));
      const attacking = attack();
      try {
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        attacked.push(await p99(3_000));
      } finally {
        attacking.stop();
        opened += attacking.opened();
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const median = (values: number[]) => [...values].sort((x, y) => x - y)[2] ?? Number.NaN;
    const shown = (values: number[]) => values.map((v) => v.toFixed(1)).join(", ");
    console.log(
      `GetReceipts p99 (ms) normal ${shown(normal)}; under attack ${shown(attacked)}; ${opened} attacking connections opened`,
    );
    expect(opened).toBeGreaterThanOrEqual(1_500);
    expect(await refusals(server, "request_body_time")).toBeGreaterThan(0);
    expect(median(attacked)).toBeLessThanOrEqual(2 * median(normal));
  }, 120_000);
});
