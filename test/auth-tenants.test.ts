import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import {
  ConversationType,
  ReadFilter,
  ReadReceiptService,
} from "../gen/receipts/v1/receipts_pb.js";
import { type App, openBackend, startApp } from "../src/app.js";
import { ConfigError, loadConfig } from "../src/config.js";
import {
  bearer,
  expectCode,
  mintToken,
  newApiKey,
  secretBytes,
  uniqueTenant,
} from "./support/auth-fixtures.js";
import { minutes } from "./support/fixtures.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/** Tenant configuration: reload without restart, per-tenant settings, development mode. */

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "receipts-tenants-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Starts the app like startTestServer, keeping its log lines. */
async function startLogged(env: Record<string, string>) {
  const lines: string[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
  const config = loadConfig({ RECEIPTS_PORT: "0", RECEIPTS_DATA_DIR: ":memory:", ...env });
  const backend = await openBackend(config);
  const app = await startApp(config, backend, logger).catch(async (error: unknown) => {
    await backend.store.close();
    throw error;
  });
  return { app, lines, baseUrl: `http://127.0.0.1:${app.port}` };
}

const tenantsFile = (name: string, tenants: unknown[]): string => {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify({ tenants }));
  return path;
};

/** "served" when the key is accepted (the message is not tracked: NOT_FOUND), else the code. */
const getReceipts = (baseUrl: string, key: string): Promise<string> =>
  createClient(ReadReceiptService, createConnectTransport({ baseUrl, httpVersion: "1.1" }))
    .getReceipts({ conversationId: "g", messageIds: ["m"] }, bearer(key))
    .then(
      () => "served",
      (reason: unknown) => {
        const code = ConnectError.from(reason).code;
        return code === Code.NotFound ? "served" : Code[code];
      },
    );

describe("reloading tenants without a restart", () => {
  let app: App | undefined;
  afterAll(async () => {
    await app?.stop();
  });

  it("follows the file, keeps the last good configuration when it breaks, and logs why", async () => {
    const tenant = uniqueTenant("reload");
    const first = newApiKey();
    const second = newApiKey();
    const path = tenantsFile("reload.json", [{ id: tenant, apiKeys: [first] }]);
    const started = await startLogged({
      RECEIPTS_TENANTS_FILE: path,
      RECEIPTS_TENANTS_POLL_SECONDS: "1",
    });
    app = started.app;
    expect(await getReceipts(started.baseUrl, first)).toBe("served");
    expect(await getReceipts(started.baseUrl, second)).toBe("Unauthenticated");

    // The file changes: the poller picks it up within a second or two.
    tenantsFile("reload.json", [{ id: tenant, apiKeys: [second] }]);
    let outcome = "";
    for (let i = 0; i < 40 && outcome !== "served"; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      outcome = await getReceipts(started.baseUrl, second);
    }
    expect(outcome).toBe("served");
    expect(await getReceipts(started.baseUrl, first)).toBe("Unauthenticated");

    // A broken file (as SIGHUP would re-read it) is refused; the last good one stays.
    writeFileSync(path, '{"tenants": [{"id": "x", "apiKeys": ["short"]}]');
    expect(await started.app.reloadTenants()).toBe(false);
    expect(await getReceipts(started.baseUrl, second)).toBe("served");
    const failure = started.lines
      .map((l) => JSON.parse(l))
      .find((l) => l.msg?.includes("reload failed"));
    expect(failure?.problems?.join("\n")).toMatch(/not JSON/);
    writeFileSync(path, JSON.stringify({ tenants: [{ id: "x", apiKeys: ["short"] }] }));
    expect(await started.app.reloadTenants()).toBe(false);
    expect(JSON.stringify(started.lines)).toContain("tenants[0].apiKeys[0]");
    expect(JSON.stringify(started.lines)).not.toContain(second);

    // A good one again is used at once.
    tenantsFile("reload.json", [{ id: tenant, apiKeys: [first] }]);
    expect(await started.app.reloadTenants()).toBe(true);
    expect(await getReceipts(started.baseUrl, first)).toBe("served");
  });
});

describe("starting with tenants", () => {
  it("refuses a broken tenant file or variable as a configuration error, naming the problem", async () => {
    const missing = startLogged({ RECEIPTS_TENANTS_FILE: join(dir, "absent.json") });
    await expect(missing).rejects.toBeInstanceOf(ConfigError);
    await expect(missing).rejects.toThrow(/absent\.json: cannot be read \(ENOENT\)/);
    await expect(startLogged({ RECEIPTS_TENANTS: '{"tenants":[{"id":"a"}]}' })).rejects.toThrow(
      /RECEIPTS_TENANTS: tenants\[0\]: needs at least one credential/,
    );
    await expect(
      startLogged({
        RECEIPTS_TENANTS: JSON.stringify({
          tenants: [
            {
              id: "a",
              userTokens: {
                keys: [
                  {
                    alg: "ES256",
                    publicKey: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
                  },
                ],
              },
            },
          ],
        }),
      }),
    ).rejects.toThrow(/tenant a: userTokens.keys\[0\]: not a usable ES256 public key/);
  });

  it("merges the file and the variable", async () => {
    const fromFile = newApiKey();
    const fromEnv = newApiKey();
    const { app, baseUrl } = await startLogged({
      RECEIPTS_TENANTS_FILE: tenantsFile("merge.json", [
        { id: uniqueTenant("f"), apiKeys: [fromFile] },
      ]),
      RECEIPTS_TENANTS: JSON.stringify({
        tenants: [{ id: uniqueTenant("e"), apiKeys: [fromEnv] }],
      }),
    });
    try {
      expect(await getReceipts(baseUrl, fromFile)).toBe("served");
      expect(await getReceipts(baseUrl, fromEnv)).toBe("served");
    } finally {
      await app.stop();
    }
  });
});

describe("development mode", () => {
  it("binds to loopback only: another address without tenants does not start", () => {
    for (const host of ["0.0.0.0", "::", "10.1.2.3", "receipts.internal"]) {
      expect(() => loadConfig({ RECEIPTS_HOST: host }), host).toThrow(ConfigError);
      expect(() => loadConfig({ RECEIPTS_HOST: host }), host).toThrow(
        /RECEIPTS_HOST=.*development mode/,
      );
      expect(() =>
        loadConfig({ RECEIPTS_HOST: host, RECEIPTS_TENANTS_FILE: "/t.json" }),
      ).not.toThrow();
      expect(() => loadConfig({ RECEIPTS_HOST: host, RECEIPTS_TENANTS: "{}" })).not.toThrow();
    }
    for (const host of ["127.0.0.1", "127.0.0.2", "::1", "localhost"]) {
      expect(() => loadConfig({ RECEIPTS_HOST: host }), host).not.toThrow();
    }
  });

  it("serves every call as the default tenant's backend and says so in the log", async () => {
    const { app, baseUrl, lines } = await startLogged({});
    try {
      expect(lines.join("\n")).toContain("DEVELOPMENT MODE");
      const members = createClient(MembershipService, createGrpcTransport({ baseUrl }));
      const added = await members.addMembers({ groupId: "g", userIds: ["a"] });
      expect(added.addedCount).toBe(1);
      // Credentials are not looked at in development mode.
      expect(await getReceipts(baseUrl, "whatever")).toBe("served");
    } finally {
      await app.stop();
    }
  });
});

describe("per-tenant receipt settings", () => {
  const tenant = { id: uniqueTenant("settings"), key: newApiKey(), secret: newApiKey() };
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      RECEIPTS_TENANTS: JSON.stringify({
        tenants: [
          {
            id: tenant.id,
            apiKeys: [tenant.key],
            userTokens: { keys: [{ alg: "HS256", secret: tenant.secret }] },
            receipts: { c2c: false },
            readMembers: { maxGroupSize: 3, openToMembers: true },
          },
        ],
      }),
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("turns receipts off per conversation type, caps member lists by group size, opens them to members", async () => {
    const transport = createGrpcTransport({ baseUrl: server.baseUrl });
    const receipts = createClient(ReadReceiptService, transport);
    const service = bearer(tenant.key);
    const message = (
      conversationId: string,
      messageId: string,
      type: ConversationType,
      receiverId = "",
    ) => ({
      conversationId,
      conversationType: type,
      messageId,
      senderId: "s",
      receiverId,
      sentAt: timestampFromMs(minutes(5)),
    });
    const c2c = await expectCode(
      receipts.trackMessages(
        { messages: [message("d", "m-d", ConversationType.C2C, "r")] },
        service,
      ),
      Code.FailedPrecondition,
    );
    expect(c2c.rawMessage).toContain("messages[0].conversation_type");

    const members = createClient(MembershipService, transport);
    await members.addMembers(
      { groupId: "small", userIds: ["s", "a", "b"], joinedAt: timestampFromMs(minutes(0)) },
      service,
    );
    await members.addMembers(
      { groupId: "big", userIds: ["s", "a", "b", "c"], joinedAt: timestampFromMs(minutes(0)) },
      service,
    );
    await receipts.trackMessages(
      {
        messages: [
          message("small", "m-small", ConversationType.GROUP),
          message("big", "m-big", ConversationType.GROUP),
        ],
      },
      service,
    );
    // openToMembers: a member who did not send the message may list who read it.
    const a = bearer(
      await mintToken({ tenant: tenant.id, sub: "a", key: secretBytes(tenant.secret) }),
    );
    const listed = await receipts.listReadMembers(
      { conversationId: "small", messageId: "m-small", filter: ReadFilter.UNREAD },
      a,
    );
    expect(listed.members.map((m) => m.userId)).toEqual(["a", "b"]);
    // Above maxGroupSize: counts only, for every caller.
    for (const caller of [a, service]) {
      const big = await expectCode(
        receipts.listReadMembers(
          { conversationId: "big", messageId: "m-big", filter: ReadFilter.READ },
          caller,
        ),
        Code.FailedPrecondition,
      );
      expect(big.rawMessage).toContain("message_id");
    }
    const counts = await receipts.getReceipts({ conversationId: "big", messageIds: ["m-big"] }, a);
    expect(counts.receipts[0]).toMatchObject({ readCount: 0, unreadCount: 3 });
  });
});
