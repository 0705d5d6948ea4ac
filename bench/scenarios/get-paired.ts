import { toBinary, toJsonString } from "@bufbuild/protobuf";
import {
  GetReceiptsRequestSchema,
  GetReceiptsResponseSchema,
} from "../../gen/receipts/v1/receipts_pb.js";
import type { BenchContext } from "../bench-context.js";
import { grpcBody, type H2loadRun, h2load } from "../h2load.js";
import { median, ratio, round } from "../latency-stats.js";
import { startServer } from "../processes.js";
import { seedHotMessages } from "./get-receipts.js";

/** One protocol's rounds: the service and ceiling (a) back to back in each, order alternating. */
export interface PairedRounds {
  readonly rounds: readonly { readonly ours: H2loadRun; readonly bare: H2loadRun }[];
  /** Medians of the rounds' ratios (ours ÷ (a)). */
  readonly callsPerSecondRatio: number;
  readonly p99Ratio: number;
}

export interface GetPairedResult {
  readonly grpc: PairedRounds;
  readonly connectHttp1: PairedRounds;
}

/**
 * Hot GetReceipts at its peak against ceiling (a), in rounds: each round drives the service,
 * then a bare connect-node server answering the service's own answer canned (or the other way
 * round, alternating), both pinned to the server CPU and both up the whole time. The ceilings
 * scenario measures (a) once, minutes before or after the service's own figures, and on this
 * machine kind the same server's peak moves by more than 20 % between minutes; a ratio within
 * one round compares two servers under the same conditions.
 */
export async function getPairedScenario(context: BenchContext): Promise<GetPairedResult> {
  const quick = context.mode === "quick";
  const { request } = await seedHotMessages(context, `${context.runId}p-`);
  const answer = await context.receipts.getReceipts(request);
  const bare = await startServer("ceiling-server.js", ["--expose-gc"], {
    CEILING_KIND: "connect",
    CEILING_GET: Buffer.from(toBinary(GetReceiptsResponseSchema, answer)).toString("base64"),
  });
  try {
    const servers = [
      { address: context.service.address, pid: context.service.pid },
      { address: `127.0.0.1:${bare.port}`, pid: bare.pid },
    ];
    const path = "/receipts.v1.ReadReceiptService/GetReceipts";
    const shape = { durationS: quick ? 8 : 20, warmUpS: 2 };
    const protocols = {
      grpc: { clients: 8, streamsPerClient: 8, body: grpcBody(GetReceiptsRequestSchema, request) },
      connectHttp1: {
        clients: 32,
        streamsPerClient: 1,
        connectHttp1: true,
        body: Buffer.from(toJsonString(GetReceiptsRequestSchema, request)),
      },
    };
    const roundCount = quick ? 3 : 5;
    const result: Record<string, PairedRounds> = {};
    for (const [name, protocol] of Object.entries(protocols)) {
      const rounds: { ours: H2loadRun; bare: H2loadRun }[] = [];
      for (let i = 0; i < roundCount; i++) {
        context.log(`getPaired: ${name}, round ${i + 1} of ${roundCount}`);
        const order = i % 2 === 0 ? servers : [...servers].reverse();
        const runs = new Map<number, H2loadRun>();
        for (const server of order) {
          runs.set(
            server.pid,
            await h2load({
              ...shape,
              ...protocol,
              url: `http://${server.address}${path}`,
              serverPid: server.pid,
            }),
          );
        }
        rounds.push({
          ours: runs.get(context.service.pid) as H2loadRun,
          bare: runs.get(bare.pid) as H2loadRun,
        });
      }
      result[name] = {
        rounds,
        callsPerSecondRatio: medianOf(
          rounds.map((r) => ratio(r.ours.callsPerSecond, r.bare.callsPerSecond)),
        ),
        p99Ratio: medianOf(rounds.map((r) => ratio(r.ours.latency.p99Ms, r.bare.latency.p99Ms))),
      };
    }
    return result as unknown as GetPairedResult;
  } finally {
    await bare.stop();
  }
}

const medianOf = (values: readonly number[]): number => round(median(values) ?? Number.NaN, 2);
