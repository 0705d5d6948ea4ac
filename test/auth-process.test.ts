import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { bearer, newApiKey } from "./support/auth-fixtures.js";

/**
 * The service as a process: tenants reloaded on SIGHUP, and configurations that must not start
 * (development mode on a public address, a broken tenant file) exit 2 with a clear message.
 * Built into its own folder so that it never races the build of test/process.test.ts; the
 * folder sits under node_modules so that the build finds its dependencies.
 */
const root = join(import.meta.dirname, "..");
const node = join(root, "node_modules", ".bin", "node");
const build = join(root, "node_modules", ".cache", `receipts-auth-process-${randomUUID()}`);
let dir: string;

beforeAll(() => {
  execFileSync(
    node,
    [
      join(root, "node_modules", "typescript", "bin", "tsc"),
      "-p",
      "tsconfig.build.json",
      "--outDir",
      build,
    ],
    { cwd: root, stdio: "pipe" },
  );
  dir = mkdtempSync(join(tmpdir(), "receipts-auth-process-"));
}, 120_000);
afterAll(() => {
  rmSync(build, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

/** Starts the built service; resolves once it listens, or rejects with its exit code and output. */
function start(env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(node, [join(build, "src", "main.js")], {
    env: { ...process.env, RECEIPTS_PORT: "0", RECEIPTS_DATA_DIR: dir, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  return new Promise((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const match = /"port":(\d+)/.exec(output);
      if (match?.[1] !== undefined) resolve({ child, port: Number(match[1]) });
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once("exit", (code) => reject(new Error(`exited with ${code}: ${output}`)));
  });
}

describe("the service as a process", () => {
  it("re-reads the tenant file on SIGHUP", async () => {
    const file = join(dir, "tenants.json");
    const first = newApiKey();
    const second = newApiKey();
    const write = (key: string) =>
      writeFileSync(file, JSON.stringify({ tenants: [{ id: "t", apiKeys: [key] }] }));
    write(first);
    // Polling once an hour: only SIGHUP can make this reload happen within the test.
    const { child, port } = await start({
      RECEIPTS_TENANTS_FILE: file,
      RECEIPTS_TENANTS_POLL_SECONDS: "3600",
    });
    try {
      const client = createClient(
        ReadReceiptService,
        createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }),
      );
      const codeWith = (key: string) =>
        client.getReceipts({ conversationId: "g", messageIds: ["m"] }, bearer(key)).then(
          () => "served",
          (reason: unknown) => Code[ConnectError.from(reason).code],
        );
      expect(await codeWith(first)).toBe("NotFound");
      expect(await codeWith(second)).toBe("Unauthenticated");
      write(second);
      child.kill("SIGHUP");
      let outcome = "";
      for (let i = 0; i < 50 && outcome !== "NotFound"; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        outcome = await codeWith(second);
      }
      expect(outcome).toBe("NotFound");
      expect(await codeWith(first)).toBe("Unauthenticated");
    } finally {
      child.kill("SIGTERM");
      await once(child, "exit");
    }
  });

  it("does not start in development mode on a non-loopback address (exit 2)", async () => {
    await expect(start({ RECEIPTS_HOST: "0.0.0.0" })).rejects.toThrow(
      /exited with 2.*RECEIPTS_HOST=0\.0\.0\.0.*development mode/s,
    );
  });

  it("does not start with a broken tenant file (exit 2), naming the problem", async () => {
    const file = join(dir, "broken.json");
    writeFileSync(file, JSON.stringify({ tenants: [{ id: "t", apiKeys: ["too-short"] }] }));
    await expect(start({ RECEIPTS_TENANTS_FILE: file, RECEIPTS_HOST: "0.0.0.0" })).rejects.toThrow(
      /exited with 2.*tenants\[0\]\.apiKeys\[0\]/s,
    );
  });
});
