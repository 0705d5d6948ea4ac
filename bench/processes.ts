import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import type { LoadTask } from "./load-tasks.js";

const here = import.meta.dirname;
/** The Node.js 24 this repository brings (`node` npm package), not the machine's. */
export const nodeBinary = process.execPath;

/** The server runs on CPU 0; load processes and the benchmark itself on the other CPUs. */
export const serverCpu = "0";
export const loadCpus = "1-1023";

function pinned(cpus: string, args: readonly string[]): [string, string[]] {
  return ["taskset", ["-c", cpus, nodeBinary, ...args]];
}

export interface ServiceProcess {
  readonly address: string;
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
}

/** Starts bench/bench-server.js (the service plus the bench RPCs) pinned to the server CPU. */
export function startService(
  env: Record<string, string>,
  options: { readonly cpuProfileDir?: string } = {},
): Promise<ServiceProcess> {
  const flags = ["--expose-gc"];
  if (options.cpuProfileDir !== undefined)
    flags.push("--cpu-prof", `--cpu-prof-dir=${options.cpuProfileDir}`);
  return startServer("bench-server.js", flags, {
    RECEIPTS_PORT: "0",
    RECEIPTS_BENCH_EMPTY_RPC: "1",
    ...env,
  });
}

/**
 * Starts a server script of bench/ pinned to the server CPU; it prints one JSON line with
 * `"port":N` once it listens.
 */
export async function startServer(
  script: string,
  flags: readonly string[],
  env: Record<string, string>,
): Promise<ServiceProcess> {
  const [command, args] = pinned(serverCpu, [...flags, join(here, script)]);
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /"port":(\d+)/.exec(output);
      if (match?.[1] !== undefined) {
        child.stdout?.off("data", onData);
        resolve(Number(match[1]));
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once("exit", (code) =>
      reject(new Error(`${script} exited with ${code}: ${output.slice(-2000)}`)),
    );
  });
  // Warnings and errors only (the bench sets RECEIPTS_LOG_LEVEL=warn): shown, never parsed.
  child.stdout?.on("data", (chunk: Buffer) => process.stderr.write(`[service] ${chunk}`));
  child.stderr?.on("data", (chunk: Buffer) => process.stderr.write(`[service] ${chunk}`));
  return {
    address: `127.0.0.1:${port}`,
    port,
    pid: child.pid as number,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await once(child, "exit");
    },
  };
}

export interface LoadProcess<R> {
  /** Resolves with what the task's `ready` message carried (stream tasks only). */
  readonly ready: Promise<unknown>;
  /** Resolves with the task's result. */
  readonly result: Promise<R>;
  /** Stream tasks: asks for the arrivals so far (then `result` resolves). */
  collect(): void;
  stop(): Promise<void>;
}

/** Starts a load process (bench/load-worker.js) on `cpus` and hands it `task`. */
export function startLoad<R>(task: LoadTask, cpus = loadCpus): LoadProcess<R> {
  const [command, args] = pinned(cpus, ["--max-old-space-size=8192", join(here, "load-worker.js")]);
  const child: ChildProcess = spawn(command, args, {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let resolveReady: (value: unknown) => void = () => {};
  const ready = new Promise((resolve) => {
    resolveReady = resolve;
  });
  const result = new Promise<R>((resolve, reject) => {
    child.on("message", (message: { ready?: unknown; result?: R; failed?: string }) => {
      if (message.ready !== undefined) resolveReady(message.ready);
      else if (message.failed !== undefined) reject(new Error(`load process: ${message.failed}`));
      else if (message.result !== undefined) resolve(message.result);
    });
    child.once("exit", (code) => reject(new Error(`load process exited with ${code}`)));
  });
  // A scenario that fails before it collects the result must not crash the run on exit.
  result.catch(() => undefined);
  child.send({ start: task });
  return {
    ready,
    result,
    collect: () => child.send({ collect: true }),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (child.connected) child.send({ stop: true });
      const exited = once(child, "exit");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      child.disconnect?.();
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Runs a task to its result, then lets the process exit. */
export async function runLoad<R>(task: LoadTask, cpus = loadCpus): Promise<R> {
  const load = startLoad<R>(task, cpus);
  try {
    return await load.result;
  } finally {
    await load.stop();
  }
}
