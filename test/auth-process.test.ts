import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { bearer, newApiKey } from "./support/auth-fixtures.js";
import { buildService, startBuiltService } from "./support/built-service.js";

/**
 * The service as a process: tenants reloaded on SIGHUP, and configurations that must not start
 * (development mode on a public address, a broken tenant file) exit 2 with a clear message.
 */
let build: ReturnType<typeof buildService>;
let dir: string;

beforeAll(() => {
  build = buildService("auth-process");
  dir = mkdtempSync(join(tmpdir(), "receipts-auth-process-"));
}, 120_000);
afterAll(() => {
  build?.remove();
  rmSync(dir, { recursive: true, force: true });
});

const start = (env: Record<string, string>) =>
  startBuiltService(build.dir, { RECEIPTS_DATA_DIR: dir, ...env });

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
