import { create, toJsonString } from "@bufbuild/protobuf";
import { Redis } from "ioredis";
import { GetReceiptsRequestSchema } from "../../gen/receipts/v1/receipts_pb.js";
import { type BenchContext, seedWorkload } from "../bench-context.js";
import { EmptyRequestSchema } from "../gen/bench/v1/bench_pb.js";
import { grpcBody, type H2loadRun, h2load } from "../h2load.js";
import { type LatencySummary, ratio, round, summarize } from "../latency-stats.js";
import type { ThroughputResult } from "../load-tasks.js";
import { runLoad } from "../processes.js";
import { groupId, messageId, receiptCall, type Workload } from "../workload.js";

export interface GetReceiptsResult {
  readonly request: string;
  readonly peak: { readonly getReceipts: H2loadRun; readonly emptyRpc: H2loadRun };
  readonly halfPeak: {
    readonly offeredCallsPerSecond: number;
    readonly getReceipts: H2loadRun;
    readonly emptyRpc: H2loadRun;
    readonly redisRead: { readonly callsPerSecond: number; readonly latency: LatencySummary };
  };
  readonly ratios: {
    readonly p50VsEmpty: number;
    readonly p99VsEmpty: number;
    readonly p99VsRedis: number;
    readonly peakVsEmpty: number;
  };
  readonly floor: { readonly target: string; readonly met: boolean };
  /** The same request in the Connect protocol (JSON) over HTTP/1.1, as browsers send it. */
  readonly connectHttp1: {
    readonly connections: number;
    readonly peak: { readonly getReceipts: H2loadRun; readonly emptyRpc: H2loadRun };
    readonly halfPeak: {
      readonly offeredCallsPerSecond: number;
      readonly getReceipts: H2loadRun;
      readonly emptyRpc: H2loadRun;
    };
    readonly p99VsEmpty: number;
    readonly floor: { readonly target: string; readonly met: boolean };
  };
}

/**
 * One group of 51 members, 10 messages read by 20 readers each (the hot GetReceipts of the
 * benchmark), and the request that reads them.
 */
export async function seedHotMessages(context: BenchContext, prefix: string) {
  const workload: Workload = {
    prefix,
    groups: 1,
    members: 51,
    messagesPerGroup: 10,
    idsPerCall: 10,
    sentAt: Date.now() - 60_000,
  };
  await seedWorkload(context, workload);
  for (let i = 0; i < 20; i++) {
    const call = receiptCall(workload, i);
    await context.receipts.sendReceipts({
      conversationId: call.conversationId,
      readerId: call.readerId,
      messageIds: call.messageIds,
    });
  }
  const request = create(GetReceiptsRequestSchema, {
    conversationId: groupId(workload, 0),
    messageIds: Array.from({ length: 10 }, (_, k) => messageId(workload, 0, k)),
  });
  return { workload, request };
}

/**
 * GetReceipts of 10 hot messages (read again and again, so their counts are
 * cached where the store caches) with h2load over h2c: its peak, then half
 * of it; the empty RPC at the same offered rate; a bare ioredis read of the
 * same number of read-count sets.
 */
export async function getReceiptsScenario(context: BenchContext): Promise<GetReceiptsResult> {
  const quick = context.mode === "quick";
  const { request } = await seedHotMessages(context, `${context.runId}h-`);
  const answer = await context.receipts.getReceipts(request);
  if (answer.receipts[0]?.readCount !== 20)
    throw new Error("GetReceipts does not see the receipts");
  await context.bench.empty({});

  const base = `http://${context.service.address}`;
  const get = grpcBody(GetReceiptsRequestSchema, request);
  const empty = grpcBody(EmptyRequestSchema, create(EmptyRequestSchema));
  const clients = 8;
  const shape = {
    clients,
    streamsPerClient: 8,
    durationS: quick ? 8 : 30,
    warmUpS: 2,
    serverPid: context.service.pid,
  };
  const getUrl = `${base}/receipts.v1.ReadReceiptService/GetReceipts`;
  const emptyUrl = `${base}/bench.v1.BenchService/Empty`;
  const grpc = await peakThenHalf(context, "", shape, getUrl, get, emptyUrl, empty);
  const { rpsPerClient } = grpc;
  const [peakGet, peakEmpty, halfGet, halfEmpty] = grpc.runs;

  // The read-count cache keeps one set per message: read as many sets, as often.
  const redis = new Redis(context.redisUrl);
  const keys = Array.from({ length: 10 }, (_, k) => `${context.redisPrefix}bench-hot-${k}`);
  for (const key of keys) {
    await redis.sadd(key, ...Array.from({ length: 21 }, (_, i) => `reader-${i}`));
  }
  redis.disconnect();
  const bare = await runLoad<ThroughputResult>({
    kind: "redis-read",
    url: context.redisUrl,
    keys,
    concurrency: clients * 8,
    rate: rpsPerClient * clients,
    durationMs: shape.durationS * 1000,
  });
  const redisRead = {
    callsPerSecond: round((bare.calls * 1000) / bare.elapsedMs, 1),
    latency: summarize(bare.latenciesMs),
  };
  const p99VsEmpty = ratio(halfGet.latency.p99Ms, halfEmpty.latency.p99Ms);

  // Connect over HTTP/1.1: one call at a time per connection, so more connections.
  const h1 = { ...shape, clients: 32, streamsPerClient: 1, connectHttp1: true };
  // JSON, as connect-web sends by default (and an empty binary body is a file h2load cannot map).
  const getBody = Buffer.from(toJsonString(GetReceiptsRequestSchema, request));
  const emptyBody = Buffer.from(toJsonString(EmptyRequestSchema, create(EmptyRequestSchema)));
  const connect = await peakThenHalf(
    context,
    "Connect over HTTP/1.1, ",
    h1,
    getUrl,
    getBody,
    emptyUrl,
    emptyBody,
  );
  const h1Rps = connect.rpsPerClient;
  const [h1PeakGet, h1PeakEmpty, h1HalfGet, h1HalfEmpty] = connect.runs;
  const failed = [h1PeakGet, h1PeakEmpty, h1HalfGet, h1HalfEmpty].find((r) => r.failed > 0);
  if (failed !== undefined) throw new Error(`Connect/HTTP 1.1 calls failed: ${failed.command}`);
  const h1P99VsEmpty = ratio(h1HalfGet.latency.p99Ms, h1HalfEmpty.latency.p99Ms);
  return {
    request: "10 message ids of one conversation, 20 readers each",
    peak: { getReceipts: peakGet, emptyRpc: peakEmpty },
    halfPeak: {
      offeredCallsPerSecond: rpsPerClient * clients,
      getReceipts: halfGet,
      emptyRpc: halfEmpty,
      redisRead,
    },
    ratios: {
      p50VsEmpty: ratio(halfGet.latency.p50Ms, halfEmpty.latency.p50Ms),
      p99VsEmpty,
      p99VsRedis: ratio(halfGet.latency.p99Ms, redisRead.latency.p99Ms),
      peakVsEmpty: ratio(peakGet.callsPerSecond, peakEmpty.callsPerSecond),
    },
    floor: { target: "p99 ≤ 3 × the empty RPC's p99", met: p99VsEmpty <= 3 },
    connectHttp1: {
      connections: h1.clients,
      peak: { getReceipts: h1PeakGet, emptyRpc: h1PeakEmpty },
      halfPeak: {
        offeredCallsPerSecond: h1Rps * h1.clients,
        getReceipts: h1HalfGet,
        emptyRpc: h1HalfEmpty,
      },
      p99VsEmpty: h1P99VsEmpty,
      floor: { target: "p99 ≤ 3 × the empty RPC's p99", met: h1P99VsEmpty <= 3 },
    },
  };
}

/**
 * GetReceipts, then the empty RPC, as fast as they go; then both again at half
 * of GetReceipts' peak. Runs in that order: peak get, peak empty, half get, half empty.
 */
async function peakThenHalf(
  context: BenchContext,
  label: string,
  shape: Omit<Parameters<typeof h2load>[0], "url" | "body" | "rpsPerClient">,
  getUrl: string,
  getBody: Buffer,
  emptyUrl: string,
  emptyBody: Buffer,
): Promise<{ rpsPerClient: number; runs: [H2loadRun, H2loadRun, H2loadRun, H2loadRun] }> {
  context.log(`get: ${label}peak with h2load`);
  const peakGet = await h2load({ ...shape, url: getUrl, body: getBody });
  const peakEmpty = await h2load({ ...shape, url: emptyUrl, body: emptyBody });
  const rpsPerClient = Math.max(1, Math.round(peakGet.callsPerSecond / 2 / shape.clients));
  context.log(`get: ${label}half of peak, ${rpsPerClient * shape.clients} calls/s`);
  const halfGet = await h2load({ ...shape, url: getUrl, body: getBody, rpsPerClient });
  const halfEmpty = await h2load({ ...shape, url: emptyUrl, body: emptyBody, rpsPerClient });
  return { rpsPerClient, runs: [peakGet, peakEmpty, halfGet, halfEmpty] };
}
