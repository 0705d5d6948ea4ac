import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { type LatencySummary, round, summarize } from "./latency-stats.js";
import { startCpuMeter } from "./process-cpu.js";
import { loadCpus } from "./processes.js";

const run = promisify(execFile);

export interface H2loadRun {
  readonly callsPerSecond: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly latency: LatencySummary;
  readonly command: string;
  /** CPU (user + system) the server process spent per succeeded call, when it was measured. */
  readonly serverCpuMicrosPerCall?: number;
}

/** A gRPC request body: the 5-byte length prefix, then the message. */
export function grpcBody<D extends DescMessage>(schema: D, message: MessageShape<D>): Buffer {
  const bytes = toBinary(schema, message);
  const frame = Buffer.alloc(5 + bytes.length);
  frame.writeUInt32BE(bytes.length, 1);
  frame.set(bytes, 5);
  return frame;
}

/**
 * h2load (nghttp2) driving one method, pinned to the load CPUs: gRPC over h2c
 * by default, or the Connect protocol over HTTP/1.1 (`connectHttp1`: one
 * request at a time per connection, no pipelining). Latency comes from its
 * per-request log; calls/s from its summary. gRPC errors travel as HTTP 200
 * with a grpc-status trailer, which h2load does not read: callers check the
 * method answers OK before they measure it. Connect errors are non-2xx, which
 * h2load counts as failed.
 */
export async function h2load(options: {
  readonly url: string;
  readonly body: Buffer;
  readonly clients: number;
  readonly streamsPerClient: number;
  readonly durationS: number;
  readonly warmUpS: number;
  /** Calls per second per client; absent for as fast as possible. */
  readonly rpsPerClient?: number;
  /** Connect protocol, JSON, over HTTP/1.1 instead of gRPC over h2c. */
  readonly connectHttp1?: boolean;
  /** The server's pid: its CPU time per call is measured (warm-up included, so a bound). */
  readonly serverPid?: number;
}): Promise<H2loadRun> {
  const protocol = options.connectHttp1
    ? ["--h1", "-H", "content-type: application/json", "-H", "connect-protocol-version: 1"]
    : ["-H", "content-type: application/grpc", "-H", "te: trailers"];
  const dir = mkdtempSync(join(tmpdir(), "bench-h2load-"));
  try {
    const bodyFile = join(dir, "body");
    const logFile = join(dir, "log");
    writeFileSync(bodyFile, options.body);
    const args = [
      "-c",
      String(options.clients),
      "-m",
      String(options.connectHttp1 ? 1 : options.streamsPerClient),
      "-t",
      "1",
      "-D",
      String(options.durationS),
      "--warm-up-time",
      String(options.warmUpS),
      ...protocol,
      "-d",
      bodyFile,
      `--log-file=${logFile}`,
      ...(options.rpsPerClient === undefined ? [] : [`--rps=${options.rpsPerClient}`]),
      options.url,
    ];
    const cpu =
      options.serverPid === undefined ? undefined : startCpuMeter({ server: options.serverPid });
    const { stdout } = await run("taskset", ["-c", loadCpus, "h2load", ...args], {
      maxBuffer: 16 * 1024 * 1024,
    });
    const perSecond = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(stdout);
    const requests =
      /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(stdout);
    if (perSecond?.[1] === undefined || requests?.[1] === undefined) {
      throw new Error(`cannot read h2load output:\n${stdout}`);
    }
    const samples = readFileSync(logFile, "utf8")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => Number(line.split("\t")[2]) / 1000);
    const serverMicros = cpu?.().byProcess.server;
    return {
      ...(serverMicros === undefined
        ? {}
        : { serverCpuMicrosPerCall: round(serverMicros / Math.max(1, Number(requests[1])), 1) }),
      callsPerSecond: round(Number(perSecond[1]), 1),
      succeeded: Number(requests[1]),
      failed: Number(requests[2]),
      latency: summarize(samples),
      command: `h2load ${args.filter((a) => !a.startsWith("--log-file") && a !== bodyFile).join(" ")}`,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
