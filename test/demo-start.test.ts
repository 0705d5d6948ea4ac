import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildService, node, root } from "./support/built-service.js";
import { freePort } from "./support/free-port.js";

interface Demo {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code once the demo has ended. */
  readonly exited: Promise<number | null>;
}

const lines = (text: string) => text.split("\n").filter((line) => line !== "");

describe("npm run demo", () => {
  let build: ReturnType<typeof buildService>;
  let webOutDir: string;
  const children: ChildProcess[] = [];
  beforeAll(() => {
    build = buildService("demo");
    webOutDir = mkdtempSync(join(tmpdir(), "receipts-demo-web-"));
  }, 120_000);
  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    build?.remove();
    rmSync(webOutDir, { recursive: true, force: true });
  });

  /** Runs scripts/demo.ts's main as `npm run demo` does, on the service built for this test. */
  function startDemo(env: Record<string, string>): Demo {
    const demo = pathToFileURL(join(root, "scripts", "demo.ts")).href;
    const overrides = JSON.stringify({ serviceMain: join(build.dir, "src", "main.js"), webOutDir });
    const child = spawn(
      node,
      [
        "--input-type=module",
        "-e",
        `const { demoMain } = await import(${JSON.stringify(demo)}); await demoMain(${overrides});`,
      ],
      { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(child);
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    return {
      child,
      stdout: () => stdout,
      stderr: () => stderr,
      exited: once(child, "close").then(([code]) => code as number | null),
    };
  }

  it("on a service port already taken: exit 2, one line naming DEMO_SERVICE_PORT, and nothing sent to the server there", async () => {
    const requests: string[] = [];
    const other = http.createServer((request, response) => {
      requests.push(`${request.method} ${request.url}`);
      response.end("{}");
    });
    other.listen(0, "127.0.0.1");
    await once(other, "listening");
    const servicePort = (other.address() as net.AddressInfo).port;
    try {
      const demo = startDemo({
        DEMO_SERVICE_PORT: String(servicePort),
        DEMO_WEB_PORT: String(await freePort()),
      });
      expect(await demo.exited).toBe(2);
      expect(lines(demo.stderr())).toEqual([
        `demo: cannot listen on 127.0.0.1:${servicePort}: the port is in use by another process (npm start, another demo?); stop it or choose another port with DEMO_SERVICE_PORT`,
      ]);
      expect(demo.stdout()).not.toContain("Read-receipt demo:");
      expect(requests).toEqual([]);
    } finally {
      other.close();
    }
  }, 120_000);

  it("on a page port already taken: exit 2 and one line naming DEMO_WEB_PORT", async () => {
    const other = net.createServer().listen(0, "127.0.0.1");
    await once(other, "listening");
    const webPort = (other.address() as net.AddressInfo).port;
    try {
      const demo = startDemo({
        DEMO_SERVICE_PORT: String(await freePort()),
        DEMO_WEB_PORT: String(webPort),
      });
      expect(await demo.exited).toBe(2);
      expect(lines(demo.stderr())).toEqual([
        expect.stringMatching(
          new RegExp(`^demo: cannot listen on 127\\.0\\.0\\.1:${webPort}: .* DEMO_WEB_PORT$`),
        ),
      ]);
    } finally {
      other.close();
    }
  }, 120_000);

  it("stops, saying so, when its service dies (kill -9) after it started", async () => {
    const servicePort = await freePort();
    const webPort = await freePort();
    const demo = startDemo({
      DEMO_SERVICE_PORT: String(servicePort),
      DEMO_WEB_PORT: String(webPort),
    });
    while (!demo.stdout().includes("Ctrl-C stops everything")) {
      if (demo.child.exitCode !== null) throw new Error(`demo exited: ${demo.stderr()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // The banner names the service the demo started; the page answers.
    expect(demo.stdout()).toContain(`service on http://127.0.0.1:${servicePort}`);
    expect((await fetch(`http://127.0.0.1:${webPort}/`)).status).toBe(200);
    const servicePid = Number(
      execFileSync("ps", ["-o", "pid=", "--ppid", String(demo.child.pid)], {
        encoding: "utf8",
      }).trim(),
    );
    process.kill(servicePid, "SIGKILL");
    expect(await demo.exited).toBe(1);
    expect(lines(demo.stderr())).toEqual([
      "demo: the service stopped on its own (SIGKILL); the demo stops too",
    ]);
    await expect(fetch(`http://127.0.0.1:${webPort}/`)).rejects.toThrow();
  }, 120_000);
});
