import { readFileSync } from "node:fs";
import { toBinary, toJsonString } from "@bufbuild/protobuf";
import {
  GetReceiptsRequestSchema,
  GetReceiptsResponseSchema,
  SendReceiptsResponseSchema,
  WatchReceiptsResponseSchema,
} from "../../gen/receipts/v1/receipts_pb.js";
import { type BenchContext, sleep } from "../bench-context.js";
import { grpcBody, type H2loadRun, h2load } from "../h2load.js";
import { type LatencySummary, round, summarize } from "../latency-stats.js";
import type { StreamsResult, ThroughputResult } from "../load-tasks.js";
import { runLoad, startLoad, startServer } from "../processes.js";
import { groupId, receiptCall, type Workload } from "../workload.js";
import { seedHotMessages } from "./get-receipts.js";

export type CeilingKind = "connect" | "grpc-js" | "raw";
/** (a) bare connect-node, (b) bare @grpc/grpc-js, (c) raw node:http2. */
export const ceilingKinds: readonly CeilingKind[] = ["connect", "grpc-js", "raw"];

export interface CeilingServerResult {
  /** GetReceipts over gRPC, h2load at the get scenario's peak shape (8 connections × 8 streams). */
  readonly get: H2loadRun;
  /** The same in the Connect protocol over HTTP/1.1 (32 connections); connect-node only. */
  readonly getConnectHttp1?: H2loadRun;
  /** SendReceipts from the send scenario's load processes (2 × 16 calls in flight). */
  readonly send: {
    readonly callsPerSecond: number;
    readonly receiptsPerSecond: number;
    readonly latency: LatencySummary;
    readonly errors: number;
  };
  /** Idle WatchReceipts streams, opened as the idle-streams scenario opens them. */
  readonly idle: {
    readonly opened: number;
    readonly failed: number;
    readonly rssBytesPerStream: number;
  };
}

export interface CeilingsResult {
  /** Sizes of the canned answers (the service's own answers to the same requests). */
  readonly answerBytes: { readonly get: number; readonly send: number; readonly watch: number };
  readonly servers: Partial<Record<CeilingKind, CeilingServerResult>>;
}

/** Idle streams per ceiling server: as many as the idle-streams scenario opens on the service. */
export const idleStreamTarget = (mode: BenchContext["mode"]) =>
  mode === "quick" ? 20_000 : 50_000;

/**
 * Ceilings (a), (b), (c): the service's answers to GetReceipts, SendReceipts
 * and WatchReceipts are recorded, then each bare server answers them canned,
 * pinned to the server's CPU, driven by the same clients as the service's
 * scenarios. The service stays up, idle, while they run.
 */
export async function ceilingsScenario(context: BenchContext): Promise<CeilingsResult> {
  const { workload: w, request } = await seedHotMessages(context, `${context.runId}c-`);
  const getAnswer = toBinary(
    GetReceiptsResponseSchema,
    await context.receipts.getReceipts(request),
  );
  const sendCall = receiptCall(w, 20);
  const sendAnswer = toBinary(
    SendReceiptsResponseSchema,
    await context.receipts.sendReceipts({ ...sendCall }),
  );
  const watching = new AbortController();
  let watchAnswer = new Uint8Array();
  for await (const first of context.receipts.watchReceipts(
    { conversationIds: [groupId(w, 0)] },
    { signal: watching.signal },
  )) {
    watchAnswer = toBinary(WatchReceiptsResponseSchema, first);
    break;
  }
  watching.abort();
  const answers = {
    CEILING_GET: Buffer.from(getAnswer).toString("base64"),
    CEILING_SEND: Buffer.from(sendAnswer).toString("base64"),
    CEILING_WATCH: Buffer.from(watchAnswer).toString("base64"),
  };

  const quick = context.mode === "quick";
  const servers: CeilingsResult["servers"] = {};
  for (const kind of ceilingKinds) {
    context.log(`ceilings: ${kind}`);
    const server = await startCeilingServer(kind, answers);
    try {
      const base = `http://127.0.0.1:${server.port}`;
      const getUrl = `${base}/receipts.v1.ReadReceiptService/GetReceipts`;
      const shape = { durationS: quick ? 8 : 30, warmUpS: 2, serverPid: server.pid };
      const get = await h2load({
        ...shape,
        clients: 8,
        streamsPerClient: 8,
        url: getUrl,
        body: grpcBody(GetReceiptsRequestSchema, request),
      });
      const getConnectHttp1 =
        kind === "connect"
          ? await h2load({
              ...shape,
              clients: 32,
              streamsPerClient: 1,
              connectHttp1: true,
              url: getUrl,
              body: Buffer.from(toJsonString(GetReceiptsRequestSchema, request)),
            })
          : undefined;
      const send = await cannedSends(`127.0.0.1:${server.port}`, quick ? 8_000 : 30_000);
      const idle = await idleStreams(context, `127.0.0.1:${server.port}`, server.pid);
      servers[kind] = { get, ...(getConnectHttp1 ? { getConnectHttp1 } : {}), send, idle };
    } finally {
      await server.stop();
    }
  }
  return {
    answerBytes: { get: getAnswer.length, send: sendAnswer.length, watch: watchAnswer.length },
    servers,
  };
}

/**
 * The send scenario's load against a canned SendReceipts: its calls (the answer does not
 * depend on them, so nothing is seeded), enough of them never to run out within the time.
 */
async function cannedSends(address: string, durationMs: number) {
  const w: Workload = {
    prefix: "canned-",
    groups: 100,
    members: 101,
    messagesPerGroup: 1_000,
    idsPerCall: 10,
    sentAt: Date.now(),
  };
  const workers = 2;
  const results = await Promise.all(
    Array.from({ length: workers }, (_, worker) =>
      runLoad<ThroughputResult>({
        kind: "send",
        address,
        workload: w,
        worker,
        workers,
        concurrency: 16,
        connections: 2,
        durationMs,
      }),
    ),
  );
  const calls = results.reduce((sum, r) => sum + r.calls, 0);
  const elapsed = Math.max(...results.map((r) => r.elapsedMs));
  return {
    callsPerSecond: round((calls * 1000) / elapsed, 1),
    receiptsPerSecond: round((calls * w.idsPerCall * 1000) / elapsed, 1),
    latency: summarize(results.flatMap((r) => r.latenciesMs)),
    errors: results.reduce((sum, r) => sum + r.errors, 0),
  };
}

/** Opens idle streams as bench/scenarios/idle-streams.ts does (4 processes × 12 connections). */
async function idleStreams(context: BenchContext, address: string, pid: number) {
  const target = idleStreamTarget(context.mode);
  const before = await rssAfterGc(pid);
  const loads = Array.from({ length: 4 }, () =>
    startLoad<StreamsResult>({
      kind: "streams",
      address,
      method: "watch",
      streams: target / 4,
      connections: 12,
      conversationIds: ["c"],
      record: false,
    }),
  );
  try {
    const ready = (await Promise.all(loads.map((l) => l.ready))) as StreamsResult[];
    await sleep(2_000);
    const after = await rssAfterGc(pid);
    const opened = ready.reduce((sum, r) => sum + r.opened, 0);
    return {
      opened,
      failed: ready.reduce((sum, r) => sum + r.failed, 0),
      rssBytesPerStream: Math.round((after - before) / Math.max(1, opened)),
    };
  } finally {
    await Promise.allSettled(loads.map((l) => l.stop()));
  }
}

async function rssAfterGc(pid: number): Promise<number> {
  process.kill(pid, "SIGUSR2");
  await sleep(1_000);
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  return Number(kb) * 1024;
}

function startCeilingServer(kind: CeilingKind, answers: Record<string, string>) {
  return startServer("ceiling-server.js", ["--expose-gc"], { CEILING_KIND: kind, ...answers });
}
