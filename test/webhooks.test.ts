import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { PrivacyService, ReceiptVisibility } from "../gen/receipts/v1/privacy_pb.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteWebhookState } from "../src/store/sqlite/sqlite-webhook-state.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";
import { newApiKey, uniqueTenant } from "./support/auth-fixtures.js";
import { startTestServer, type TestServer } from "./support/test-server.js";
import {
  messageOf,
  quickWebhooks,
  receiptKeys,
  seedGroups,
  type TenantClients,
  tenantClients,
  tenantsJson,
  type WebhookTenant,
} from "./support/webhook-fixtures.js";
import {
  type Answer,
  newWebhookSecret,
  type ReceivedWebhook,
  verifyWith,
  WebhookReceiver,
} from "./support/webhook-receiver.js";

const readers = ["r0", "r1", "r2", "r3", "r4"];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("webhooks on the embedded store", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function start(
    tenants: readonly WebhookTenant[],
    env: Record<string, string> = {},
  ): Promise<TestServer> {
    const server = await startTestServer({
      ...quickWebhooks,
      RECEIPTS_TENANTS: tenantsJson(tenants),
      ...env,
    });
    cleanups.push(() => server.stop());
    return server;
  }

  async function receiver(): Promise<WebhookReceiver> {
    const r = await new WebhookReceiver().listen();
    cleanups.push(() => r.close());
    return r;
  }

  const tenant = (url: string, endpoint: Record<string, unknown> = {}): WebhookTenant => ({
    id: uniqueTenant("hooks"),
    apiKey: newApiKey(),
    webhooks: [{ id: "crm", url, secrets: [newWebhookSecret()], ...endpoint }],
  });

  /** A receiver answering as `answer`, a tenant with one endpoint there, its server, seeded groups. */
  async function endpointWith(
    answer: Answer | undefined,
    options: {
      readonly endpoint?: Record<string, unknown>;
      readonly env?: Record<string, string>;
      readonly groups?: readonly string[];
      readonly messages: number;
    },
  ) {
    const hooks = await receiver();
    if (answer !== undefined) hooks.answer = answer;
    const t = tenant(hooks.url, options.endpoint);
    const server = await start([t], options.env);
    const clients = tenantClients(server.baseUrl, t.apiKey);
    await seedGroups(clients, options.groups ?? ["g0"], readers, options.messages);
    return { hooks, t, server, clients };
  }

  /** One SendReceipts of `readerId` for group messages by index. */
  const read = (
    clients: TenantClients,
    readerId: string,
    indexes: readonly number[],
    groupId = "g0",
  ) =>
    clients.receipts.sendReceipts({
      conversationId: groupId,
      readerId,
      messageIds: indexes.map((i) => messageOf(groupId, i)),
    });

  /** Each reader reads each group's messages m0..m(n-1) in order, `chunk` per SendReceipts. */
  async function readAll(
    server: TestServer,
    t: WebhookTenant,
    groups: readonly string[],
    messages: number,
    chunk = 5,
  ): Promise<string[]> {
    const { receipts } = tenantClients(server.baseUrl, t.apiKey);
    const sent: string[] = [];
    await Promise.all(
      groups.flatMap((groupId) =>
        readers.map(async (readerId) => {
          for (let i = 0; i < messages; i += chunk) {
            const messageIds = Array.from({ length: chunk }, (_, k) => messageOf(groupId, i + k));
            await receipts.sendReceipts({ conversationId: groupId, readerId, messageIds });
            for (const id of messageIds) sent.push(`${groupId}/${id}/${readerId}`);
          }
        }),
      ),
    );
    return sent;
  }

  /** Per conversation and reader, messages arrive in the order they were read. */
  function expectReadOrder(events: ReturnType<WebhookReceiver["events"]>): void {
    const seen = new Map<string, number>();
    for (const key of receiptKeys(events)) {
      const [groupId, messageId, readerId] = key.split("/") as [string, string, string];
      const index = Number(/m(\d+)$/.exec(messageId)?.[1]);
      const stream = `${groupId}/${readerId}`;
      expect(index, `${key} after m${seen.get(stream)}`).toBeGreaterThan(seen.get(stream) ?? -1);
      seen.set(stream, index);
    }
  }

  it("never sends a private read or a private reader's horizon", async () => {
    const { hooks, server, t, clients } = await endpointWith(undefined, { messages: 3 });
    const privacy = createClient(
      PrivacyService,
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" }),
    );
    await privacy.setReceiptSettings(
      { userId: "r1", defaultVisibility: ReceiptVisibility.PRIVATE },
      { headers: { authorization: `Bearer ${t.apiKey}` } },
    );
    await read(clients, "r1", [0, 1]);
    await clients.receipts.markConversationRead({ conversationId: "g0", readerId: "r1" });
    await read(clients, "r0", [0]);
    await clients.receipts.markConversationRead({ conversationId: "g0", readerId: "r2" });
    // r2's horizon marks m0..m2: three receipts and one conversation.read, all shown.
    await hooks.until(() => hooks.events().length >= 5);
    await sleep(500); // room for anything private to show
    const events = hooks.events();
    expect(receiptKeys(events).sort()).toEqual(
      ["g0/g0m0/r0", "g0/g0m0/r2", "g0/g0m1/r2", "g0/g0m2/r2"].sort(),
    );
    expect(events.filter((e) => e.type === "conversation.read")).toHaveLength(1);
    expect(JSON.stringify(events)).not.toContain('"r1"');
  });

  it("delivers every acknowledged receipt exactly once, signed with every current secret", async () => {
    const hooks = await receiver();
    const [secretA, secretB] = [newWebhookSecret(), newWebhookSecret()];
    const t = tenant(hooks.url, { secrets: [secretA, secretB], batchSize: 10 });
    const server = await start([t]);
    const clients = tenantClients(server.baseUrl, t.apiKey);
    const groups = ["g0", "g1", "g2", "g3"];
    await seedGroups(clients, groups, readers, 20);

    const sent = await readAll(server, t, groups, 20);
    await clients.receipts.markConversationRead({ conversationId: "g0", readerId: "r0" });
    expect(sent).toHaveLength(400);
    await hooks.until(() => hooks.events().length >= 401);
    await sleep(1_000); // room for a duplicate to show

    const events = hooks.events();
    const lags = hooks.received
      .flatMap((r) => r.payload.events.map((e) => r.at - Date.parse(e.timestamp)))
      .filter((lag) => lag >= 0)
      .sort((x, y) => x - y);
    console.log(
      `embedded: 400 receipts, delivery lag p50 ${lags[Math.floor(lags.length / 2)]} ms, p99 ${lags[Math.floor(lags.length * 0.99)]} ms`,
    );
    expect(events).toHaveLength(401);
    expect(new Set(events.map((e) => e.id)).size).toBe(401);
    expect(receiptKeys(events).sort()).toEqual(sent.sort());
    expect(events.filter((e) => e.type === "conversation.read")).toMatchObject([
      { data: { conversationId: "g0", readerId: "r0" } },
    ]);
    expectReadOrder(events);
    // A healthy receiver answered every POST first time: every webhook-id once.
    expect(new Set(hooks.received.map((r) => r.headers["webhook-id"])).size).toBe(
      hooks.received.length,
    );
    for (const webhook of hooks.received) {
      expect(webhook.payload.tenant).toBe(t.id);
      expect(webhook.payload.eventCount).toBe(webhook.payload.events.length);
      expect(webhook.payload.eventCount).toBeLessThanOrEqual(10);
      // Rotation: a receiver holding either secret verifies; one holding neither does not.
      expect(verifyWith(secretA, webhook)).toEqual(JSON.parse(webhook.body));
      expect(verifyWith(secretB, webhook)).toEqual(JSON.parse(webhook.body));
      expect(() => verifyWith(newWebhookSecret(), webhook)).toThrow();
    }
    // The Connect JSON of ReceiptUpdate, with the message's counts at that point.
    const last = events.filter((e) => e.type === "receipt.read").at(-1);
    expect(last?.data).toMatchObject({
      receipt: {
        conversationId: expect.any(String),
        conversationType: "CONVERSATION_TYPE_GROUP",
        messageId: expect.any(String),
        senderId: "s",
        readCount: expect.any(Number),
        unreadCount: 0,
        receiverId: "",
        receiverRead: false,
        sentAt: expect.any(String),
      },
      readerId: expect.any(String),
      readAt: expect.any(String),
    });
    // Counts never go down along a message's events, and end at every reader.
    const counts = new Map<string, number>();
    for (const e of events.filter((e) => e.type === "receipt.read")) {
      const key = `${e.data.receipt?.conversationId}/${e.data.receipt?.messageId}`;
      const count = e.data.receipt?.readCount as number;
      expect(count).toBeGreaterThanOrEqual(counts.get(key) ?? 0);
      counts.set(key, count);
    }
    expect(new Set(counts.values())).toEqual(new Set([readers.length]));
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(metrics).toContain(
      `receipts_webhook_events_total{tenant="${t.id}",endpoint="crm",result="delivered"} 401`,
    );
    // One observation per delivered read, from its read_at: a number of seconds, never NaN.
    const reads = events.filter((e) => e.type === "receipt.read").length;
    expect(metrics).toContain(`receipts_webhook_delivery_seconds_count ${reads}`);
    const sum = Number(/^receipts_webhook_delivery_seconds_sum (\S+)$/m.exec(metrics)?.[1]);
    expect(Number.isFinite(sum) && sum >= 0).toBe(true);
  }, 60_000);

  it("delivers everything in per-conversation order, nothing twice, once a receiver that was down is up", async () => {
    const hooks = await receiver();
    const port = hooks.port;
    await hooks.close(); // down: connections refused
    const t = tenant(hooks.url, { batchSize: 7 });
    const server = await start([t]);
    const clients = tenantClients(server.baseUrl, t.apiKey);
    await seedGroups(clients, ["g0", "g1"], readers, 20);
    const sent = await readAll(server, t, ["g0", "g1"], 20, 4);
    await sleep(2_000);
    const down = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(down).toMatch(
      new RegExp(`receipts_webhook_retries_total\\{tenant="${t.id}",endpoint="crm"\\} [1-9]`),
    );
    expect(down).toContain(`receipts_webhook_endpoint_failing{tenant="${t.id}",endpoint="crm"} 1`);
    // The tenant's endpoint being down is not our health's business.
    expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(200);

    await hooks.listen(port);
    await hooks.until(() => hooks.events().length >= sent.length, 20_000);
    await sleep(1_000);
    const events = hooks.events();
    expect(events).toHaveLength(sent.length);
    expect(new Set(events.map((e) => e.id)).size).toBe(sent.length);
    expect(receiptKeys(events).sort()).toEqual(sent.sort());
    expectReadOrder(events);
  }, 60_000);

  it("keeps delivering other conversations while one conversation's POSTs fail", async () => {
    const { hooks, t, server } = await endpointWith(
      (request, response) => {
        const failing = request.payload.events.some((e) => e.data.receipt?.conversationId === "g0");
        response.writeHead(failing ? 500 : 204).end();
      },
      { endpoint: { batchSize: 1, concurrency: 2 }, groups: ["g0", "g1"], messages: 10 },
    );
    await readAll(server, t, ["g0"], 10);
    const later = await readAll(server, t, ["g1"], 10);
    const delivered = () =>
      hooks.received.filter((r) => r.payload.events[0]?.data.receipt?.conversationId === "g1");
    await hooks.until(() => delivered().length >= later.length, 15_000);
    expect(receiptKeys(delivered().flatMap((r) => r.payload.events)).sort()).toEqual(later.sort());
    // g0 was tried, and only its first event: the rest wait behind it, in order.
    const g0 = hooks.received.filter(
      (r) => r.payload.events[0]?.data.receipt?.conversationId === "g0",
    );
    expect(g0.length).toBeGreaterThan(1);
    expect(new Set(g0.map((r) => r.headers["webhook-id"])).size).toBe(1);
  }, 30_000);

  it("probes a failing endpoint one request at a time, and uses its concurrency again once it answers", async () => {
    let inFlight = 0;
    // The first POSTs went out together before any failed; measured from when those are answered.
    let failingSince = Number.POSITIVE_INFINITY;
    let peakWhileFailing = 0;
    let peakOnceHealthy = 0;
    let healthy = false;
    const { hooks, clients } = await endpointWith(
      async (_request, response) => {
        inFlight++;
        if (Date.now() > failingSince + 300 && !healthy) {
          peakWhileFailing = Math.max(peakWhileFailing, inFlight);
        }
        if (healthy) peakOnceHealthy = Math.max(peakOnceHealthy, inFlight);
        await sleep(100);
        inFlight--;
        failingSince = Math.min(failingSince, Date.now());
        response.writeHead(healthy ? 204 : 503).end();
      },
      {
        endpoint: { concurrency: 4, batchSize: 1 },
        groups: ["g0", "g1", "g2", "g3"],
        messages: 10,
      },
    );
    await Promise.all(
      ["g0", "g1", "g2", "g3"].map(async (groupId) => {
        for (let i = 0; i < 10; i++) await read(clients, "r0", [i], groupId);
      }),
    );
    await sleep(2_000);
    expect(hooks.received.length).toBeGreaterThan(5);
    expect(peakWhileFailing).toBe(1);
    healthy = true;
    await hooks.until(() => new Set(receiptKeys(hooks.events())).size >= 40, 20_000);
    expect(peakOnceHealthy).toBeGreaterThan(1);
  }, 40_000);

  it("starts, changes and stops endpoints when the tenants file is reloaded", async () => {
    const hooks = await receiver();
    const [oldSecret, newSecret] = [newWebhookSecret(), newWebhookSecret()];
    const t = tenant(hooks.url, { secrets: [oldSecret] });
    const dir = mkdtempSync(join(tmpdir(), "receipts-hooks-file-"));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "tenants.json");
    writeFileSync(file, tenantsJson([{ ...t, webhooks: [] }]));
    const server = await startTestServer({
      ...quickWebhooks,
      RECEIPTS_TENANTS_FILE: file,
      RECEIPTS_WEBHOOKS_LEASE_SECONDS: "1",
    });
    cleanups.push(() => server.stop());
    const clients = tenantClients(server.baseUrl, t.apiKey);
    await seedGroups(clients, ["g0"], readers, 3);
    await read(clients, "r0", [0]);
    await sleep(1_000);
    expect(hooks.received).toHaveLength(0); // no endpoint yet

    writeFileSync(file, tenantsJson([t]));
    expect(await server.app.reloadTenants()).toBe(true);
    await read(clients, "r1", [1]);
    await hooks.until(() => hooks.received.length >= 1);
    expect(receiptKeys(hooks.events())).toEqual([`g0/${messageOf("g0", 1)}/r1`]);

    // Rotation: the new secret only, from the next delivery on.
    writeFileSync(
      file,
      tenantsJson([{ ...t, webhooks: [{ ...t.webhooks[0], secrets: [newSecret] }] }]),
    );
    expect(await server.app.reloadTenants()).toBe(true);
    await read(clients, "r2", [2]);
    await hooks.until(() => hooks.received.length >= 2);
    const rotated = hooks.received[1] as ReceivedWebhook;
    expect(verifyWith(newSecret, rotated)).toBeTruthy();
    expect(() => verifyWith(oldSecret, rotated)).toThrow();

    writeFileSync(file, tenantsJson([{ ...t, webhooks: [] }]));
    expect(await server.app.reloadTenants()).toBe(true);
    await sleep(1_000);
    await read(clients, "r3", [2]);
    await sleep(1_500);
    expect(hooks.received).toHaveLength(2);
  }, 30_000);

  it("honours Retry-After", async () => {
    const { hooks, clients } = await endpointWith(
      (_request, response) => {
        if (hooks.received.length === 1) response.writeHead(503, { "retry-after": "2" }).end();
        else response.writeHead(200).end();
      },
      { messages: 1 },
    );
    await read(clients, "r0", [0]);
    await hooks.until(() => hooks.received.length >= 2, 10_000);
    const [first, second] = hooks.received as [ReceivedWebhook, ReceivedWebhook];
    // Without Retry-After the backoff here is at most 1 s.
    expect(second.at - first.at).toBeGreaterThanOrEqual(1_950);
    expect(second.headers["webhook-id"]).toBe(first.headers["webhook-id"]);
    expect(second.body).toBe(first.body);
  }, 30_000);

  it("stops calling an endpoint that answered 410 Gone until enabled again, losing nothing", async () => {
    const { hooks, t, server, clients } = await endpointWith(
      (_request, response) => void response.writeHead(410).end(),
      { env: { RECEIPTS_WEBHOOKS_LEASE_SECONDS: "1" }, messages: 5 },
    );
    await read(clients, "r0", [0]);
    await hooks.until(() => hooks.received.length >= 1);
    for (const readerId of readers) {
      await read(clients, readerId, [1]);
    }
    await sleep(2_500);
    expect(hooks.received).toHaveLength(1);
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(metrics).toContain(
      `receipts_webhook_endpoint_disabled{tenant="${t.id}",endpoint="crm"} 1`,
    );
    expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(200);

    // What `receipts webhooks enable` does; deliveries resume from the cursor.
    hooks.answer = (_request, response) => void response.writeHead(204).end();
    const db = openSqliteDatabase(join(server.dataDir, "receipts.db"));
    await new SqliteWebhookState(db, new SqliteWriteBatcher(db)).setDisabled(
      { tenant: t.id, endpoint: "crm" },
      undefined,
    );
    db.close();
    await hooks.until(() => receiptKeys(hooks.events()).length >= 7, 10_000);
    expect(receiptKeys(hooks.events().slice(1)).sort()).toEqual(
      [
        `g0/${messageOf("g0", 0)}/r0`,
        ...readers.map((r) => `g0/${messageOf("g0", 1)}/${r}`),
      ].sort(),
    );
  }, 30_000);

  it("keeps a delivery as failed after the retry period", async () => {
    const { hooks, t, server, clients } = await endpointWith(
      (_request, response) => void response.writeHead(500).end(),
      { env: { RECEIPTS_WEBHOOKS_RETRY_PERIOD_SECONDS: "1" }, messages: 3 },
    );
    await read(clients, "r0", [0, 1, 2]);
    await hooks.until(() => hooks.received.length >= 3, 10_000);
    await sleep(2_500);
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(metrics).toContain(
      `receipts_webhook_events_total{tenant="${t.id}",endpoint="crm",result="failed"} 3`,
    );
    // Given up: no more attempts.
    const attempts = hooks.received.length;
    await sleep(1_500);
    expect(hooks.received.length).toBe(attempts);
  }, 30_000);

  it("a receiver taking 10 s per answer slows neither SendReceipts nor another tenant's deliveries", async () => {
    const slow = await receiver();
    const pending = new Set<NodeJS.Timeout>();
    cleanups.push(async () => {
      for (const timer of pending) clearTimeout(timer);
    });
    slow.answer = (_request, response) =>
      void pending.add(setTimeout(() => response.writeHead(204).end(), 10_000));
    const healthy = await receiver();
    const a = tenant(slow.url, { timeoutSeconds: 30, concurrency: 2, batchSize: 1 });
    const b = tenant(healthy.url);
    const server = await start([a, b]);
    const clientsA = tenantClients(server.baseUrl, a.apiKey);
    const clientsB = tenantClients(server.baseUrl, b.apiKey);
    await seedGroups(clientsA, ["g0", "g1", "g2"], readers, 20);
    await seedGroups(clientsB, ["g0"], readers, 20);

    const latencies: number[] = [];
    const acknowledgedAt = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      for (const [groupId, readerId] of [
        ["g0", "r0"],
        ["g1", "r1"],
        ["g2", "r2"],
      ] as const) {
        const startedAt = performance.now();
        await clientsA.receipts.sendReceipts({
          conversationId: groupId,
          readerId,
          messageIds: [messageOf(groupId, i)],
        });
        latencies.push(performance.now() - startedAt);
      }
      await clientsB.receipts.sendReceipts({
        conversationId: "g0",
        readerId: "r0",
        messageIds: [messageOf("g0", i)],
      });
      acknowledgedAt.set(`g0/${messageOf("g0", i)}/r0`, Date.now());
    }
    await healthy.until(() => healthy.events().length >= 20, 5_000);
    // Tenant A's endpoint holds every request it got; it has had at most its concurrency.
    expect(slow.received.length).toBeLessThanOrEqual(2);
    expect(Math.max(...latencies)).toBeLessThan(500);
    for (const webhook of healthy.received) {
      for (const key of receiptKeys(webhook.payload.events)) {
        expect(webhook.at - (acknowledgedAt.get(key) ?? 0)).toBeLessThan(1_000);
      }
    }
  }, 60_000);
});
