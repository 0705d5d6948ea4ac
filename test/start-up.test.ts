import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stripVTControlCharacters } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildService, node } from "./support/built-service.js";

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to its end, with its output. */
function run(command: string, args: readonly string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { env: { ...process.env, ...env }, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Resolves with everything `child` wrote to stdout once it holds `pattern`. */
function outputUntil(child: ChildProcess, pattern: RegExp): Promise<string> {
  let output = "";
  return new Promise((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (pattern.test(output)) resolve(output);
    });
    child.once("exit", (code) => reject(new Error(`exited with ${code}: ${output}`)));
  });
}

const lines = (text: string) => text.split("\n").filter((line) => line !== "");
const systemNode = "/usr/bin/node";
const systemNodeVersion = execFileSync(systemNode, ["--version"], { encoding: "utf8" }).trim();

describe("starting the service", () => {
  let build: ReturnType<typeof buildService>;
  let dataDir: string;
  let main: string;
  const children: ChildProcess[] = [];
  beforeAll(() => {
    build = buildService("start-up");
    main = join(build.dir, "src", "main.js");
    dataDir = mkdtempSync(join(tmpdir(), "receipts-start-up-"));
  }, 120_000);
  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    build?.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("on a port already taken: exit 2 and one line naming the port, no stack trace", async () => {
    const taken = net.createServer();
    taken.listen(0, "127.0.0.1");
    await once(taken, "listening");
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const started = await run(node, [main], {
        RECEIPTS_PORT: String(port),
        RECEIPTS_DATA_DIR: dataDir,
      });
      expect(started.code).toBe(2);
      expect(lines(started.stderr)).toEqual([
        `read-receipts: cannot listen on 127.0.0.1:${port}: the port is in use by another process (another npm start?); stop it or choose another port with RECEIPTS_PORT`,
      ]);
      expect(started.stdout).not.toMatch(/EADDRINUSE|\n\s+at /);
    } finally {
      taken.close();
    }
  });

  // The machine's own Node is 20; where it is 24 or later there is nothing to refuse.
  it.skipIf(!/^v(1\d|2[0-3])\./.test(systemNodeVersion))(
    `on Node older than 24 (${systemNode}, ${systemNodeVersion}): exit 2 and one line saying to run it with npm start`,
    async () => {
      const started = await run(systemNode, [main], {
        RECEIPTS_PORT: "0",
        RECEIPTS_DATA_DIR: dataDir,
      });
      expect(started).toMatchObject({ code: 2, stdout: "" });
      expect(lines(started.stderr)).toEqual([
        `read-receipts needs Node 24 or later, not ${systemNodeVersion.slice(1)}: start it with \`npm start\` (npm scripts run the Node 24 of the project's node_modules) or node_modules/.bin/node dist/src/main.js`,
      ]);
    },
  );

  it("logs JSON lines when stdout is no terminal, the start line with the URLs and a call to try that works", async () => {
    const child = spawn(node, [main], {
      env: { ...process.env, RECEIPTS_PORT: "0", RECEIPTS_DATA_DIR: dataDir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    const output = await outputUntil(child, /"tryIt".*\n/);
    const started = lines(output)
      .map((line) => JSON.parse(line))
      .find((line) => line.tryIt !== undefined);
    const url = `http://127.0.0.1:${started.port}`;
    expect(started).toMatchObject({
      level: 30,
      msg: `read-receipt service listening on ${url} (gRPC, gRPC-Web, Connect)`,
      url,
      health: `${url}/healthz`,
      metrics: `${url}/metrics`,
    });
    for (const path of ["/healthz", "/metrics"]) {
      expect((await fetch(`${url}${path}`)).status, path).toBe(200);
    }
    // The next step it suggests, run as the user would paste it.
    const tried = await run("sh", ["-c", started.tryIt], {});
    expect(tried.stdout).toBe('{"addedCount":2}');
    child.kill("SIGTERM");
    expect((await once(child, "exit"))[0]).toBe(0);
  });

  it("logs pretty lines and prints where to go next when stdout is a terminal", async () => {
    // `script` gives the service a pseudo-terminal; `exec` keeps the shell's pid for the kill.
    const child = spawn("script", ["-qefc", `echo pid=$$; exec ${node} ${main}`, "/dev/null"], {
      env: { ...process.env, RECEIPTS_PORT: "0", RECEIPTS_DATA_DIR: dataDir, TERM: "dumb" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    const output = await outputUntil(child, /--help\r?\n/);
    const pid = Number(/pid=(\d+)/.exec(output)?.[1]);
    process.kill(pid, "SIGTERM");
    await once(child, "exit");
    const text = stripVTControlCharacters(output);
    expect(text).not.toContain('{"level"');
    expect(text).toMatch(
      /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: read-receipt service listening on http:\/\/127\.0\.0\.1:\d+ /m,
    );
    expect(text).toMatch(/^ {2}health {22}http:\/\/127\.0\.0\.1:\d+\/healthz/m);
    expect(text).toMatch(/^ {2}metrics {21}http:\/\/127\.0\.0\.1:\d+\/metrics/m);
    expect(text).toMatch(/Development mode: no credentials needed.*Try:\r?\n {4}curl -s http/);
  });
});
