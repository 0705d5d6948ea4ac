import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiKeyTenantEnv, newApiKey, uniqueTenant } from "./support/auth-fixtures.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/** Debian's Python with its grpcio and protobuf modules (python3-grpcio), not a pyenv shim. */
const python = "/usr/bin/python3";
const hasGrpcio = existsSync(python) && importsGrpcio(python);
if (!hasGrpcio) {
  console.warn(
    `Skipping the Python grpcio tests: ${python} cannot import grpc (apt-get install -y python3-grpcio).`,
  );
}

/** A Python without the modules exits 1 on the import: that skips the suite, it does not fail it. */
function importsGrpcio(interpreter: string): boolean {
  try {
    const answer = execFileSync(interpreter, ["-c", "import grpc, google.protobuf; print('ok')"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    return answer.trim() === "ok";
  } catch {
    return false;
  }
}
const root = join(import.meta.dirname, "..");
const script = join(import.meta.dirname, "support", "python", "error_details.py");

interface PythonView {
  readonly code: string;
  readonly statusCode?: number;
  readonly details: { readonly type: string; readonly value: Record<string, unknown> }[];
}

/**
 * Error details as generic gRPC tooling sees them: a Python grpcio client that
 * knows no receipts.v1 code decodes grpc-status-details-bin as the public
 * google.rpc.Status, BadRequest and RetryInfo.
 */
describe.skipIf(!hasGrpcio)("error details seen by a Python grpcio client", () => {
  const tenant = { id: uniqueTenant("python"), key: newApiKey() };
  let server: TestServer;
  let dir: string;
  let descriptors: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "receipts-python-"));
    descriptors = join(dir, "receipts.binpb");
    execFileSync("buf", ["build", "-o", descriptors], {
      cwd: root,
      env: {
        ...process.env,
        PATH: `${join(root, "node_modules", ".bin")}${delimiter}${process.env.PATH}`,
      },
    });
    server = await startTestServer({
      // Three calls, then one every 100 s: the fourth is refused with a retry delay.
      RECEIPTS_TENANTS: apiKeyTenantEnv(tenant, { tenantRequestsPerSecond: 0.01, tenantBurst: 3 }),
    });
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const call = async (method: string, request: unknown): Promise<PythonView> => {
    const { stdout } = await promisify(execFile)(python, [
      script,
      server.address,
      `Bearer ${tenant.key}`,
      descriptors,
      method,
      JSON.stringify(request),
    ]);
    return JSON.parse(stdout) as PythonView;
  };

  it("shows the field at fault as a google.rpc.BadRequest field violation", async () => {
    const view = await call("receipts.v1.ReadReceiptService/GetReceipts", {
      conversationId: "team",
      messageIds: ["m1", "x".repeat(129)],
    });
    expect(view.code).toBe("INVALID_ARGUMENT");
    expect(view.statusCode).toBe(3);
    expect(view.details).toEqual([
      {
        type: "google.rpc.BadRequest",
        value: {
          fieldViolations: [
            // The description without the field again: tools print them side by side.
            {
              field: "message_ids[1]",
              description: expect.stringMatching(/^(?!message_ids).*128/),
            },
          ],
        },
      },
    ]);
  });

  it("shows a refused call's retry delay as google.rpc.RetryInfo", async () => {
    // The burst of three is spent within four calls (the other test may have spent one).
    let refused: PythonView | undefined;
    for (let i = 0; i < 4 && refused === undefined; i++) {
      const view = await call("receipts.v1.MembershipService/ListMembers", { groupId: "team" });
      if (view.code !== "OK") refused = view;
    }
    expect(refused?.code).toBe("RESOURCE_EXHAUSTED");
    expect(refused?.details.map((detail) => detail.type)).toEqual(["google.rpc.RetryInfo"]);
    // protobuf JSON of a Duration: seconds with a trailing "s", here up to 100 s.
    const delay = String(refused?.details[0]?.value.retryDelay);
    expect(delay).toMatch(/^\d+(\.\d+)?s$/);
    expect(Number.parseFloat(delay)).toBeGreaterThan(0);
    expect(Number.parseFloat(delay)).toBeLessThanOrEqual(100);
  });
});
