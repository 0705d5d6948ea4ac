import { create } from "@bufbuild/protobuf";

/**
 * `node dist/bench/ab-compare.js <checkoutA> <checkoutB> [rounds] [callsPerSecond]`: two
 * builds of the service (each a checkout with its own `dist/`, built by `npm run bench` or
 * `tsc -p bench/tsconfig.json`) run side by side on the server CPU, each seeded with the hot
 * GetReceipts workload; then GetReceipts and the empty RPC at a fixed offered rate against
 * each in turn, the order alternating per round. Prints the server CPU per call, p99 and
 * calls/s served of every run as JSON: on a shared machine a before/after is only worth the
 * rounds it was measured in, back to back.
 */
type Processes = typeof import("./processes.js");
type Context = typeof import("./bench-context.js");
type H2load = typeof import("./h2load.js");
type Receipts = typeof import("../gen/receipts/v1/receipts_pb.js");
type Bench = typeof import("./gen/bench/v1/bench_pb.js");
type GetScenario = typeof import("./scenarios/get-receipts.js");

const [dirA, dirB, roundsArg, rateArg] = process.argv.slice(2);
if (dirA === undefined || dirB === undefined) {
  throw new Error("usage: ab-compare <checkoutA> <checkoutB> [rounds] [callsPerSecond]");
}
const rounds = Number(roundsArg ?? 4);
const rate = Number(rateArg ?? 300);

async function build(name: string, dir: string) {
  const from = (path: string) => import(`${dir}/dist/${path}`);
  const processes = (await from("bench/processes.js")) as Processes;
  const context = (await from("bench/bench-context.js")) as Context;
  const h2 = (await from("bench/h2load.js")) as H2load;
  const receipts = (await from("gen/receipts/v1/receipts_pb.js")) as Receipts;
  const bench = (await from("bench/gen/bench/v1/bench_pb.js")) as Bench;
  const scenario = (await from("bench/scenarios/get-receipts.js")) as GetScenario;
  const service = await processes.startService({
    RECEIPTS_LOG_LEVEL: "warn",
    RECEIPTS_STORE: "embedded",
    RECEIPTS_DATA_DIR: `/tmp/receipts-ab-${name}-${Date.now()}`,
  });
  const clients = context.connectClients(service.address);
  const seeding = { ...clients, log: () => {} } as unknown as Parameters<
    GetScenario["seedHotMessages"]
  >[0];
  const { request } = await scenario.seedHotMessages(seeding, `ab${name}-`);
  return {
    name,
    service,
    h2,
    get: h2.grpcBody(receipts.GetReceiptsRequestSchema, request),
    empty: h2.grpcBody(bench.EmptyRequestSchema, create(bench.EmptyRequestSchema)),
  };
}

const builds = [await build("A", dirA), await build("B", dirB)];
const runs: Record<string, unknown>[] = [];
try {
  for (let round = 0; round < rounds; round++) {
    for (const b of round % 2 === 0 ? builds : [...builds].reverse()) {
      for (const [rpc, body] of [
        ["receipts.v1.ReadReceiptService/GetReceipts", b.get],
        ["bench.v1.BenchService/Empty", b.empty],
      ] as const) {
        const run = await b.h2.h2load({
          url: `http://${b.service.address}/${rpc}`,
          body,
          clients: 8,
          streamsPerClient: 8,
          durationS: 8,
          warmUpS: 1,
          rpsPerClient: rate / 8,
          serverPid: b.service.pid,
        });
        runs.push({
          round,
          build: b.name,
          rpc,
          serverCpuMicrosPerCall: run.serverCpuMicrosPerCall,
          p99Ms: run.latency.p99Ms,
          callsPerSecond: run.callsPerSecond,
        });
        process.stderr.write(`${JSON.stringify(runs.at(-1))}\n`);
      }
    }
  }
} finally {
  for (const b of builds) await b.service.stop();
}
process.stdout.write(`${JSON.stringify(runs, null, 2)}\n`);
