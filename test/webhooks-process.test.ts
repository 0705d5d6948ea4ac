import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newApiKey, uniqueTenant } from "./support/auth-fixtures.js";
import {
  buildService,
  root,
  type ServiceProcess,
  startBuiltService,
} from "./support/built-service.js";
import { createTestKeyspace } from "./support/cassandra-test-keyspace.js";
import { deleteKeys, sharedRedisUrl, uniquePrefix } from "./support/shared-redis.js";
import {
  messageOf,
  quickWebhooks,
  receiptKeys,
  seedGroups,
  tenantClients,
  tenantsJson,
  type WebhookTenant,
} from "./support/webhook-fixtures.js";
import { newWebhookSecret, verifyWith, WebhookReceiver } from "./support/webhook-receiver.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const readers = ["r0", "r1", "r2", "r3", "r4"];

describe("webhooks of a built service", () => {
  let build: ReturnType<typeof buildService>;
  const running: ServiceProcess[] = [];
  const receivers: WebhookReceiver[] = [];
  const dirs: string[] = [];

  beforeAll(() => {
    build = buildService("webhooks");
    chmodSync(join(build.dir, "src", "cli", "main.js"), 0o755);
  });
  afterAll(async () => {
    for (const service of running) service.child.kill("SIGKILL");
    for (const receiver of receivers) await receiver.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    build?.remove();
  });

  const receiver = async () => {
    const r = await new WebhookReceiver().listen();
    receivers.push(r);
    return r;
  };
  const start = async (env: Record<string, string>) => {
    const service = await startBuiltService(build.dir, env);
    running.push(service);
    return service;
  };
  const kill9 = async (service: ServiceProcess) => {
    service.child.kill("SIGKILL");
    await new Promise((resolve) => service.child.once("exit", resolve));
  };
  const embeddedEnv = (t: WebhookTenant, extra: Record<string, string> = {}) => {
    const dataDir = mkdtempSync(join(tmpdir(), "receipts-hooks-"));
    dirs.push(dataDir);
    return {
      ...quickWebhooks,
      RECEIPTS_STORE: "embedded",
      RECEIPTS_DATA_DIR: dataDir,
      RECEIPTS_TENANTS: tenantsJson([t]),
      RECEIPTS_WEBHOOKS_LEASE_SECONDS: "2",
      ...extra,
    };
  };
  const tenant = (url: string, secret = newWebhookSecret(), batchSize = 5): WebhookTenant => ({
    id: uniqueTenant("hooks"),
    apiKey: newApiKey(),
    webhooks: [{ id: "crm", url, secrets: [secret], batchSize }],
  });

  /** Runs the built CLI with the service's environment. */
  const cli = (args: string[], env: Record<string, string>) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        join(build.dir, "src", "cli", "main.js"),
        args,
        {
          env: {
            ...process.env,
            PATH: `${join(root, "node_modules", ".bin")}${delimiter}${process.env.PATH ?? ""}`,
            ...env,
          },
          timeout: 30_000,
        },
        (error, stdout, stderr) =>
          resolve({ code: error === null ? 0 : Number(error.code ?? -1), stdout, stderr }),
      );
    });

  it("an instance killed (kill -9) with acknowledged receipts not yet delivered: the restarted one delivers them all", async () => {
    const hooks = await receiver();
    // Requests are held unanswered: the first instance dies with deliveries in flight.
    const held: (() => void)[] = [];
    hooks.answer = (_request, response) => void held.push(() => response.end());
    const t = tenant(hooks.url);
    const env = embeddedEnv(t);
    const first = await start(env);
    const clients = tenantClients(first.baseUrl, t.apiKey);
    await seedGroups(clients, ["g0", "g1"], readers, 10);
    const sent: string[] = [];
    for (const groupId of ["g0", "g1"]) {
      for (const readerId of readers) {
        const messageIds = Array.from({ length: 10 }, (_, i) => messageOf(groupId, i));
        await clients.receipts.sendReceipts({ conversationId: groupId, readerId, messageIds });
        sent.push(...messageIds.map((m) => `${groupId}/${m}/${readerId}`));
      }
    }
    await hooks.until(() => hooks.received.length >= 1);
    await kill9(first);
    const beforeRestart = hooks.received.length;
    hooks.answer = (_request, response) => void response.writeHead(204).end();

    const second = await start(env);
    await hooks.until(
      () => new Set(receiptKeys(hooks.events().slice(0))).size >= sent.length,
      30_000,
    );
    expect([...new Set(receiptKeys(hooks.events()))].sort()).toEqual(sent.sort());
    // Only what the dead instance had in flight came twice, with the same event ids.
    const ids = hooks.events().map((e) => e.id);
    expect(ids.length - new Set(ids).size).toBeLessThanOrEqual(
      hooks.received.slice(0, beforeRestart).reduce((n, r) => n + r.payload.eventCount, 0),
    );
    await kill9(second);
  }, 90_000);

  it("lists failed deliveries, replays them with their webhook-id, and sends a test event (CLI)", async () => {
    const hooks = await receiver();
    hooks.answer = (_request, response) => void response.writeHead(500).end();
    const secret = newWebhookSecret();
    const t = tenant(hooks.url, secret);
    const env = embeddedEnv(t, { RECEIPTS_WEBHOOKS_RETRY_PERIOD_SECONDS: "1" });
    const service = await start(env);
    const clients = tenantClients(service.baseUrl, t.apiKey);
    await seedGroups(clients, ["g0"], readers, 2);
    await clients.receipts.sendReceipts({
      conversationId: "g0",
      readerId: "r0",
      messageIds: [messageOf("g0", 0), messageOf("g0", 1)],
    });

    let failed: { webhookId: string; eventCount: number; lastError: string }[] = [];
    for (let i = 0; i < 50 && failed.length === 0; i++) {
      await sleep(200);
      const run = await cli(["webhooks", "failed", "--tenant", t.id, "--json"], env);
      expect(run.code, run.stderr).toBe(0);
      failed =
        run.stdout.trim() === ""
          ? []
          : run.stdout
              .trim()
              .split("\n")
              .map((l) => JSON.parse(l));
    }
    expect(failed).toMatchObject([{ eventCount: 2, lastError: "500" }]);
    const failedId = failed[0]?.webhookId;
    expect(hooks.received.every((r) => r.headers["webhook-id"] === failedId)).toBe(true);

    const attempts = hooks.received.length;
    hooks.answer = (_request, response) => void response.writeHead(200).end();
    const replay = await cli(["webhooks", "replay", "--tenant", t.id, "--endpoint", "crm"], env);
    expect(replay.code, replay.stderr).toBe(0);
    expect(replay.stdout).toMatch(/^1 failed deliveries marked for replay/);
    await hooks.until(() => hooks.received.length > attempts, 10_000);
    const replayed = hooks.received[attempts];
    expect(replayed?.headers["webhook-id"]).toBe(failedId);
    expect(replayed === undefined ? undefined : verifyWith(secret, replayed)).toMatchObject({
      eventCount: 2,
    });
    await sleep(1_500); // the replay's success is recorded
    const after = await cli(["webhooks", "failed", "--tenant", t.id], env);
    expect(after.stdout.trim()).toBe("");

    const enable = await cli(["webhooks", "enable", "--tenant", t.id, "--endpoint", "crm"], env);
    expect(enable.stdout.trim()).toBe("crm was not disabled");
    const test = await cli(["webhooks", "test", "--tenant", t.id, "--endpoint", "crm"], env);
    expect(test.code, test.stderr).toBe(0);
    const last = hooks.received.at(-1);
    expect(last?.payload.events[0]?.type).toBe("webhook.test");
    expect(last === undefined ? undefined : verifyWith(secret, last)).toBeTruthy();
    hooks.answer = (_request, response) => void response.writeHead(503).end();
    const refused = await cli(["webhooks", "test", "--tenant", t.id, "--endpoint", "crm"], env);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toContain("retry (503)");
    await kill9(service);
  }, 90_000);

  describe("two instances on Cassandra + Redis", () => {
    let keyspace: Awaited<ReturnType<typeof createTestKeyspace>>;
    const prefix = uniquePrefix("webhooks");
    beforeAll(async () => {
      keyspace = await createTestKeyspace();
    });
    afterAll(async () => {
      await keyspace?.drop();
      await deleteKeys(prefix);
    });

    it("deliver each event once while both take receipts, and one takes over when the other dies", async () => {
      const hooks = await receiver();
      const t = tenant(hooks.url, newWebhookSecret(), 100);
      const env = {
        ...quickWebhooks,
        RECEIPTS_STORE: "cassandra",
        RECEIPTS_CASSANDRA_KEYSPACE: keyspace.keyspace,
        RECEIPTS_REDIS_URL: sharedRedisUrl,
        RECEIPTS_REDIS_KEY_PREFIX: prefix,
        RECEIPTS_TENANTS: tenantsJson([t]),
        RECEIPTS_WEBHOOKS_LEASE_SECONDS: "2",
      };
      const [a, b] = await Promise.all([start(env), start(env)]);
      if (a === undefined || b === undefined) throw new Error("not started");
      const groups = Array.from({ length: 8 }, (_, g) => `g${g}`);
      const messages = 50;
      await seedGroups(tenantClients(a.baseUrl, t.apiKey), groups, readers, messages);

      // Every reader reads every message, the calls spread over both instances.
      const sent: string[] = [];
      const startedAt = Date.now();
      await Promise.all(
        groups.flatMap((groupId, g) =>
          readers.map(async (readerId, r) => {
            const client = tenantClients(((g + r) % 2 === 0 ? a : b).baseUrl, t.apiKey);
            for (let i = 0; i < messages; i += 10) {
              const messageIds = Array.from({ length: 10 }, (_, k) => messageOf(groupId, i + k));
              await client.receipts.sendReceipts({ conversationId: groupId, readerId, messageIds });
              sent.push(...messageIds.map((m) => `${groupId}/${m}/${readerId}`));
            }
          }),
        ),
      );
      const rate = sent.length / ((Date.now() - startedAt) / 1000);
      await hooks.until(() => hooks.events().length >= sent.length, 30_000);
      await sleep(1_500);
      const events = hooks.events();
      expect(receiptKeys(events).sort()).toEqual([...sent].sort());
      expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
      // From the acknowledgement (read_at, this machine's clock) to the receiver's arrival.
      const lags = hooks.received
        .flatMap((r) => r.payload.events.map((e) => r.at - Date.parse(e.timestamp)))
        .sort((x, y) => x - y);
      const at = (q: number) => lags[Math.min(lags.length - 1, Math.floor(lags.length * q))];
      console.log(
        `two instances: ${sent.length} receipts at ${rate.toFixed(0)}/s, each delivered once; delivery lag p50 ${at(0.5)} ms, p99 ${at(0.99)} ms`,
      );

      // One dies; the other takes the endpoint over once the lease expires.
      await kill9(a);
      const more: string[] = [];
      const client = tenantClients(b.baseUrl, t.apiKey);
      for (const readerId of readers) {
        await client.receipts.markConversationRead({ conversationId: "g0", readerId });
        more.push(readerId);
      }
      await hooks.until(
        () => hooks.events().filter((e) => e.type === "conversation.read").length >= 5,
        20_000,
      );
      const horizons = hooks.events().filter((e) => e.type === "conversation.read");
      expect(horizons.map((e) => e.data.readerId).sort()).toEqual(more);
      await kill9(b);
    }, 120_000);
  });
});
