import { createServer as createHttpServer } from "node:http";
import { type AddressInfo, createServer as createTcpServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { parseTenants, TenantConfigError } from "../src/auth/tenant-config.js";
import { isForbiddenAddress, urlProblem } from "../src/webhooks/url-policy.js";
import { WebhookSender } from "../src/webhooks/webhook-sender.js";
import { newApiKey } from "./support/auth-fixtures.js";
import { newWebhookSecret, WebhookReceiver } from "./support/webhook-receiver.js";

const strict = { allowPrivate: false };
const open = { allowPrivate: true };
const sendOptions = { timeoutMs: 2_000, concurrency: 1 };

const tenantsWith = (webhooks: unknown[]) =>
  JSON.stringify({ tenants: [{ id: "acme", apiKeys: [newApiKey()], webhooks }] });

function problemsOf(text: string, rules = strict): readonly string[] {
  try {
    parseTenants(text, "RECEIPTS_TENANTS", rules);
  } catch (error) {
    if (error instanceof TenantConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe("webhook URL rules", () => {
  it.each([
    ["http://hooks.example.com/x", "must be an https:// URL"],
    ["ftp://hooks.example.com/x", "must be an https:// URL"],
    ["not a url", "not a URL"],
    ["https://user:pw@hooks.example.com/x", "user name or password"],
    ["https://127.0.0.1/x", "127.0.0.1 is a loopback"],
    ["https://127.8.9.10/x", "loopback, private"],
    ["https://10.1.2.3/x", "loopback, private"],
    ["https://172.20.0.1/x", "loopback, private"],
    ["https://192.168.1.1/x", "loopback, private"],
    ["https://169.254.169.254/latest/meta-data", "loopback, private"],
    ["https://100.64.0.1/x", "loopback, private"],
    ["https://0.0.0.0/x", "loopback, private"],
    ["https://[::1]/x", "loopback, private"],
    ["https://[fe80::1]/x", "loopback, private"],
    ["https://[fd00:ec2::254]/x", "loopback, private"],
    ["https://[::ffff:127.0.0.1]/x", "loopback, private"],
    ["https://[::ffff:a9fe:a9fe]/x", "loopback, private"],
    ["https://localhost/x", "local or internal host"],
    ["https://metadata.google.internal/x", "local or internal host"],
  ])("refuses %s", (url, problem) => {
    expect(urlProblem(url, strict)).toContain(problem);
  });

  it.each([
    "https://hooks.example.com/x",
    "https://93.184.216.34/x",
    "https://[2606:2800:220:1::]/x",
  ])("accepts %s", (url) => {
    expect(urlProblem(url, strict)).toBeUndefined();
  });

  it("allows http and private addresses only when the operator does (RECEIPTS_WEBHOOKS_ALLOW_PRIVATE=1)", () => {
    expect(urlProblem("http://127.0.0.1:8080/x", open)).toBeUndefined();
    expect(urlProblem("https://10.0.0.5/x", open)).toBeUndefined();
    expect(urlProblem("ftp://127.0.0.1/x", open)).toContain("https:// or http://");
  });

  it("classifies addresses, IPv4-mapped and NAT64 ones by the IPv4 inside", () => {
    expect(isForbiddenAddress("8.8.8.8")).toBe(false);
    expect(isForbiddenAddress("2001:4860:4860::8888")).toBe(false);
    expect(isForbiddenAddress("::ffff:10.0.0.1")).toBe(true);
    expect(isForbiddenAddress("64:ff9b::7f00:1")).toBe(true);
    expect(isForbiddenAddress("64:ff9b::808:808")).toBe(false);
    expect(isForbiddenAddress("not an address")).toBe(true);
  });

  it("names the tenant's bad endpoint in the configuration error", () => {
    const good = { id: "crm", url: "https://hooks.example.com/x", secrets: [newWebhookSecret()] };
    expect(problemsOf(tenantsWith([good]))).toEqual([]);
    expect(
      problemsOf(tenantsWith([good, { ...good, id: "ops", url: "https://10.0.0.1/" }])),
    ).toEqual([
      expect.stringMatching(
        /^RECEIPTS_TENANTS: tenants\[0\]\.webhooks\[1\]\.url \(endpoint ops\): 10\.0\.0\.1 is a loopback/,
      ),
    ]);
    expect(problemsOf(tenantsWith([{ ...good, secrets: ["hunter2"] }]))).toEqual([
      expect.stringMatching(/tenants\[0\]\.webhooks\[0\]\.secrets\[0\]: must be whsec_/),
    ]);
    expect(problemsOf(tenantsWith([{ ...good, secrets: [`whsec_${"AA"}`] }]))[0]).toMatch(
      /secrets\[0\]: must be whsec_ followed by the base64 of 24 to 64 bytes/,
    );
    expect(problemsOf(tenantsWith([{ ...good, events: ["receipt.deleted"] }]))[0]).toMatch(
      /webhooks\[0\]\.events\[0\]/,
    );
    expect(problemsOf(tenantsWith([good, good]))[0]).toMatch(
      /webhooks\[1\]\.id: crm is used twice/,
    );
    expect(problemsOf(tenantsWith([{ ...good, concurrency: 0 }]))[0]).toMatch(
      /webhooks\[0\]\.concurrency/,
    );
    expect(problemsOf(tenantsWith([{ ...good, colour: "red" }]))[0]).toMatch(/webhooks\[0\]/);
    // A problem never shows a secret.
    const secret = newWebhookSecret();
    expect(
      problemsOf(tenantsWith([{ ...good, secrets: [secret], url: "http://x" }])).join(),
    ).not.toContain(secret.slice(6));
  });
});

describe("the webhook sender", () => {
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
  });

  it("never connects to a host that resolves to a forbidden address", async () => {
    let connections = 0;
    const tcp = createTcpServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => tcp.listen(0, "127.0.0.1", resolve));
    closers.push(() => new Promise<void>((resolve) => tcp.close(() => resolve())));
    const port = (tcp.address() as AddressInfo).port;
    const sender = new WebhookSender(strict);
    closers.push(() => sender.close());
    // "localhost" resolves to loopback: refused at connect time, whatever the URL check said.
    for (const url of [`https://localhost:${port}/x`, `https://127.0.0.1:${port}/x`]) {
      expect(await sender.send(url, {}, "{}", sendOptions)).toEqual({
        kind: "retry",
        reason: "EWEBHOOKADDRESS",
      });
    }
    expect(await sender.send(`http://example.com:${port}/x`, {}, "{}", sendOptions)).toEqual({
      kind: "retry",
      reason: "EWEBHOOKSCHEME",
    });
    expect(connections).toBe(0);
  });

  it("gives each endpoint connections of its own: endpoints at one receiver never queue behind each other", async () => {
    const shared = await new WebhookReceiver().listen();
    closers.push(() => shared.close());
    const held: (() => void)[] = [];
    closers.push(() => {
      for (const release of held) release();
    });
    // Tenant acme's receiver holds its request; globex's, at the same host, answers at once.
    shared.answer = (request, response) => {
      if (request.body.includes("acme")) held.push(() => response.writeHead(204).end());
      else response.writeHead(204).end();
    };
    const sender = new WebhookSender(open);
    closers.push(() => sender.close());
    const acme = sender.send(shared.url, {}, '{"tenant":"acme"}', {
      ...sendOptions,
      pool: "acme/crm",
    });
    await shared.until(() => shared.received.length === 1);
    const started = performance.now();
    const globex = await sender.send(shared.url, {}, '{"tenant":"globex"}', {
      ...sendOptions,
      pool: "globex/crm",
    });
    expect(globex).toEqual({ kind: "delivered", status: 204 });
    expect(performance.now() - started).toBeLessThan(1_000);
    for (const release of held.splice(0)) release();
    expect(await acme).toEqual({ kind: "delivered", status: 204 });
  });

  it("does not follow redirects", async () => {
    const target = await new WebhookReceiver().listen();
    closers.push(() => target.close());
    const redirecting = await new WebhookReceiver().listen();
    closers.push(() => redirecting.close());
    redirecting.answer = (_request, response) =>
      void response.writeHead(307, { location: target.url }).end();
    const sender = new WebhookSender(open);
    closers.push(() => sender.close());
    const outcome = await sender.send(redirecting.url, {}, '{"events":[]}', sendOptions);
    expect(outcome).toEqual({ kind: "retry", reason: "307" });
    expect(redirecting.received).toHaveLength(1);
    expect(target.received).toHaveLength(0);
  });

  it("reads a few KB of an answer at most: an endless body still counts as delivered", async () => {
    let writing = true;
    const server = createHttpServer((request, response) => {
      request.resume();
      response.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024, 120);
      const pump = () => {
        while (writing && response.write(chunk)) {}
        if (writing) response.once("drain", pump);
      };
      pump();
      response.on("close", () => {
        writing = false;
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    closers.push(() => {
      writing = false;
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const sender = new WebhookSender(open);
    closers.push(() => sender.close());
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`;
    expect(await sender.send(url, {}, "{}", sendOptions)).toEqual({
      kind: "delivered",
      status: 200,
    });
  });

  it("gives up on an answer that takes longer than the timeout", async () => {
    const slow = await new WebhookReceiver().listen();
    closers.push(() => slow.close());
    slow.answer = () => undefined; // never answers
    const sender = new WebhookSender(open);
    closers.push(() => sender.close());
    const startedAt = Date.now();
    const outcome = await sender.send(slow.url, {}, '{"events":[]}', {
      timeoutMs: 300,
      concurrency: 1,
    });
    expect(outcome).toEqual({ kind: "retry", reason: "timeout" });
    expect(Date.now() - startedAt).toBeLessThan(1_500);
  });
});
