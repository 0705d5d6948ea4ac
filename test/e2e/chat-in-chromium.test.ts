import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Browser, BrowserContext, ConsoleMessage, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReadFilter, ReadReceiptService } from "../../gen/receipts/v1/receipts_pb.js";
import {
  buildWeb,
  type ConversationHistory,
  chatLink,
  type DemoTenant,
  demoTenant,
  type StaticServer,
  seedDemo,
  startStaticServer,
} from "../../scripts/demo.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { chromiumPath, hasChromium, launchChromium, screenshot } from "./support/chromium.js";

if (!hasChromium) {
  console.warn(
    `Skipping the browser end-to-end tests: ${chromiumPath} is missing (apt-get install -y chromium).`,
  );
}

const conversation = "team";
const viewport = { width: 1100, height: 760 };

describe.skipIf(!hasChromium)("the web client in Chromium, against the real service", () => {
  let outDir: string;
  let dataDir: string;
  let web: StaticServer;
  let service: TestServer;
  let servicePort: number;
  let tenant: DemoTenant;
  let history: ConversationHistory;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  /** The service as `npm run demo` runs it: one tenant, CORS open to the page's origin only. */
  const startService = (port: number) =>
    startTestServer({
      RECEIPTS_PORT: String(port),
      RECEIPTS_DATA_DIR: dataDir,
      RECEIPTS_CORS_ORIGINS: web.origin,
      RECEIPTS_TENANTS: tenant.tenantsJson,
      RECEIPTS_SHUTDOWN_GRACE_SECONDS: "2",
    });

  /** A page of the chat as one user, in its own browser context (its own cookies and connections). */
  async function openChat(
    user: string,
    options: { origin?: string; pageSize?: number; token?: string } = {},
  ): Promise<{
    page: Page;
    logs: string[];
    token: string;
    authorizations: string[];
    procedures: string[];
    watchTokens: string[];
  }> {
    const context = await browser.newContext({ viewport });
    contexts.push(context);
    const page = await context.newPage();
    const logs: string[] = [];
    page.on("console", (message: ConsoleMessage) => logs.push(message.text()));
    // The Authorization header of every call the page makes to the service, and the procedure.
    const authorizations: string[] = [];
    const procedures: string[] = [];
    // The resume token each WatchReceipts call was opened with.
    const watchTokens: string[] = [];
    page.on("request", (request) => {
      if (!request.url().startsWith(service.baseUrl) || request.method() !== "POST") return;
      procedures.push(request.url().split("/").at(-1) ?? "");
      void request.allHeaders().then(
        (headers) => {
          authorizations.push(headers.authorization ?? "(none)");
        },
        // The page closed before its last requests' headers were read: nothing left to check.
        () => {},
      );
      const body = request.postDataBuffer();
      if (request.url().endsWith("/WatchReceipts") && body !== null) {
        // One Connect envelope: a flag byte, a 4-byte length, then the JSON request.
        const json = JSON.parse(body.subarray(5).toString("utf8")) as { resumeToken?: string };
        watchTokens.push(json.resumeToken ?? "");
      }
    });
    const token = options.token ?? (await tenant.mintUserToken(user));
    const link = chatLink(options.origin ?? web.origin, {
      user,
      conversation,
      server: service.baseUrl,
      token,
    });
    await page.goto(options.pageSize === undefined ? link : `${link}&pageSize=${options.pageSize}`);
    return { page, logs, token, authorizations, procedures, watchTokens };
  }

  const receipt = (page: Page, messageId: string) =>
    page.locator(`[data-message-id="${messageId}"] .receipt-text`);
  const readByText = (page: Page, messageId: string) =>
    receipt(page, messageId).textContent({ timeout: 5_000 });
  /** Waits, without reloading, until the message shows the count. */
  const waitForReadBy = (page: Page, messageId: string, read: number, of: number) =>
    receipt(page, messageId)
      .filter({ hasText: new RegExp(`^Read by ${read} of ${of}$`) })
      .waitFor({ timeout: 15_000 });
  const waitForConnection = (page: Page, state: string, timeout = 15_000) =>
    page.locator(`.connection[data-state="${state}"]`).waitFor({ timeout });
  /** Marks the page, so that a later check proves it was never reloaded. */
  const markPage = (page: Page) =>
    page.evaluate(() => {
      (globalThis as Record<string, unknown>).e2eMark = "not reloaded";
    });
  const pageMark = (page: Page) =>
    page.evaluate(() => (globalThis as Record<string, unknown>).e2eMark);

  /** Who has read a message, asked of the service directly with the backend's key. */
  async function readersOf(messageId: string): Promise<string[]> {
    const client = createClient(
      ReadReceiptService,
      createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "1.1" }),
    );
    const page = await client.listReadMembers(
      { conversationId: conversation, messageId, filter: ReadFilter.READ, pageSize: 1000 },
      { headers: tenant.serviceHeaders },
    );
    return page.members.map((m) => m.userId);
  }
  const aliceMessages = () =>
    history.messages.filter((m) => m.senderId === "alice").map((m) => m.id);

  beforeAll(async () => {
    outDir = mkdtempSync(join(tmpdir(), "receipts-web-"));
    dataDir = mkdtempSync(join(tmpdir(), "receipts-e2e-"));
    tenant = demoTenant();
    const launched = launchChromium();
    await buildWeb(outDir);
    web = await startStaticServer({ dir: outDir });
    service = await startService(0);
    servicePort = Number(new URL(service.baseUrl).port);
    history = await seedDemo(service.baseUrl, { headers: tenant.serviceHeaders });
    web.addHistory(history);
    browser = await launched;
  }, 120_000);

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await service?.stop();
    await web?.close();
    for (const dir of [outDir, dataDir]) {
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  let alice: Page;
  let aliceWatchTokens: string[];
  let bob: Page;

  it("shows the sender's messages with their read counts, live, calling as the user", async () => {
    const opened = await openChat("alice", { pageSize: 2 });
    alice = opened.page;
    aliceWatchTokens = opened.watchTokens;
    await waitForConnection(alice, "live");
    // Seeded: carol, dave, erin and frank had read yesterday's messages; bob nothing.
    await waitForReadBy(alice, "team-002", 4, 5);
    await waitForReadBy(alice, "team-020", 0, 5);
    expect(await alice.locator(".message.mine").count()).toBe(aliceMessages().length);
    // Others' messages show no receipt button; the sender sees who wrote them.
    expect(await alice.locator(".message.theirs .receipt").count()).toBe(0);
    expect(await alice.locator(".topbar h1").textContent()).toBe("Launch crew");
    // Every call carried Alice's user token, never the backend's API key.
    expect(opened.authorizations.length).toBeGreaterThanOrEqual(2);
    expect(new Set(opened.authorizations)).toEqual(new Set([`Bearer ${opened.token}`]));
    await markPage(alice);
    await screenshot(alice, "01-sender-live");
  });

  it("sends receipts for what the reader sees, and the sender's count changes without reload", async () => {
    ({ page: bob } = await openChat("bob"));
    await waitForConnection(bob, "live");
    // Bob opens at the latest messages: the ones on his screen count as read.
    await waitForReadBy(alice, "team-020", 1, 5);
    await waitForReadBy(alice, "team-021", 1, 5);
    await screenshot(bob, "02-reader-opened");
    // team-002 is far above Bob's screen: not read until he scrolls to it.
    expect(await readByText(alice, "team-002")).toBe("Read by 4 of 5");
    expect(await readersOf("team-002")).not.toContain("bob");

    await bob.locator('[data-message-id="team-002"]').scrollIntoViewIfNeeded();
    await waitForReadBy(alice, "team-002", 5, 5);
    expect(await readersOf("team-002")).toContain("bob");
    await alice.locator('[data-message-id="team-002"]').scrollIntoViewIfNeeded();
    expect(await pageMark(alice)).toBe("not reloaded");
    await screenshot(alice, "03-sender-count-updated");
  });

  it("lists the reader under read, paged with load more", async () => {
    await alice.locator('[data-message-id="team-002"] .receipt').click();
    const sheet = alice.locator("dialog.sheet[open]");
    await sheet.waitFor({ timeout: 5_000 });
    const names = sheet.locator(".member .member-name");
    // Page size 2 (from the link): Bob and Carol first, in user-id order.
    await names.nth(1).waitFor({ timeout: 5_000 });
    expect(await names.allTextContents()).toEqual(["Bob Chen", "Carol Diaz"]);
    expect(await sheet.locator('.tab[data-side="read"] .tab-count').textContent()).toBe("5");
    await sheet.locator(".load-more").click();
    await names.nth(3).waitFor({ timeout: 5_000 });
    await sheet.locator(".load-more").click();
    await names.nth(4).waitFor({ timeout: 5_000 });
    expect(await names.allTextContents()).toEqual([
      "Bob Chen",
      "Carol Diaz",
      "Dave Okafor",
      "Erin Walsh",
      "Frank Ito",
    ]);
    await sheet.locator(".load-more").waitFor({ state: "hidden", timeout: 5_000 });
    await screenshot(alice, "04-member-list-read");

    await sheet.locator('.tab[data-side="unread"]').click();
    await sheet.locator(".member-status", { hasText: "Everyone has read it." }).waitFor({
      timeout: 5_000,
    });
    await alice.keyboard.press("Escape");
    await sheet.waitFor({ state: "detached", timeout: 5_000 });
  });

  it("keeps the sender's page live across a service restart, resuming the stream", async () => {
    // team-014 sits between what Bob has seen at the top and at the bottom.
    const target = "team-014";
    expect(await readersOf(target)).not.toContain("bob");
    await alice.locator(`[data-message-id="${target}"]`).scrollIntoViewIfNeeded();
    expect(await readByText(alice, target)).toBe("Read by 2 of 5");
    expect(aliceWatchTokens).toEqual([""]);

    await service.stop();
    await waitForConnection(alice, "reconnecting", 10_000);
    await screenshot(alice, "05-sender-reconnecting");
    service = await startService(servicePort);
    await waitForConnection(alice, "live", 30_000);
    // Every reconnection asked to resume after the last update the page had received.
    expect(aliceWatchTokens.length).toBeGreaterThan(1);
    expect(aliceWatchTokens.slice(1).every((token) => token !== "")).toBe(true);

    // With the list of readers open, Bob reads the message: he appears in it, live.
    await alice.locator(`[data-message-id="${target}"] .receipt`).click();
    const sheet = alice.locator("dialog.sheet[open]");
    const names = sheet.locator(".member .member-name");
    await names.nth(1).waitFor({ timeout: 5_000 });
    expect(await names.allTextContents()).toEqual(["Dave Okafor", "Erin Walsh"]);
    await bob.locator(`[data-message-id="${target}"]`).scrollIntoViewIfNeeded();
    await waitForReadBy(alice, target, 3, 5);
    await names.nth(2).waitFor({ timeout: 5_000 });
    expect(await names.allTextContents()).toEqual(["Bob Chen", "Dave Okafor", "Erin Walsh"]);
    expect(await sheet.locator('.tab[data-side="read"] .tab-count').textContent()).toBe("3");
    expect(await readersOf(target)).toContain("bob");
    expect(await pageMark(alice)).toBe("not reloaded");
    await screenshot(alice, "06-sender-live-after-restart");
    await alice.keyboard.press("Escape");
    await sheet.waitFor({ state: "detached", timeout: 5_000 });
  }, 60_000);

  it("marks the whole conversation read with one click", async () => {
    const { page: frank } = await openChat("frank");
    await waitForConnection(frank, "live");
    // Frank had read yesterday's messages only; this morning's first message of Alice's is far above his screen.
    const target = "team-007";
    expect(await readersOf(target)).not.toContain("frank");
    const [, read = ""] =
      /^Read by (\d+) of 5$/.exec((await readByText(alice, target)) ?? "") ?? [];

    await frank.getByRole("button", { name: "Mark all as read" }).click();
    await frank.locator(".toast.is-shown", { hasText: /^Marked \d+ messages as read$/ }).waitFor({
      timeout: 10_000,
    });
    await screenshot(frank, "07-reader-marked-all-read");
    await alice.locator(`[data-message-id="${target}"]`).scrollIntoViewIfNeeded();
    await waitForReadBy(alice, target, Number(read) + 1, 5);
    expect(await readersOf(target)).toContain("frank");
    await screenshot(alice, "08-sender-after-mark-all-read");
  });

  it("shows no count on a message that never asked for receipts, and the others' counts still", async () => {
    // The messaging backend's history holds a message it never tracked with the service.
    const withUntracked: ConversationHistory = {
      ...history,
      conversation: { id: "team-with-untracked", title: "Launch crew" },
      messages: [
        ...history.messages,
        {
          id: "team-untracked",
          senderId: "alice",
          text: "(sent without asking for receipts)",
          sentAt: new Date().toISOString(),
        },
      ],
    };
    web.addHistory(withUntracked);
    const context = await browser.newContext({ viewport });
    contexts.push(context);
    const page = await context.newPage();
    const link = chatLink(web.origin, {
      user: "alice",
      conversation,
      server: service.baseUrl,
      token: await tenant.mintUserToken("alice"),
    });
    await page.goto(`${link}&history=conversations/team-with-untracked.json`);
    await waitForConnection(page, "live");
    await waitForReadBy(page, "team-002", 5, 5);
    await page.locator('[data-message-id="team-untracked"] .bubble').waitFor({ timeout: 5_000 });
    expect(await page.locator('[data-message-id="team-untracked"] .receipt').count()).toBe(0);
  });

  it("explains an incomplete link instead of showing a broken chat", async () => {
    const context = await browser.newContext({ viewport });
    contexts.push(context);
    const page = await context.newPage();
    await page.goto(`${web.origin}/?conversation=team`);
    const problem = page.locator(".problem");
    await problem.waitFor({ timeout: 5_000 });
    expect(await problem.locator("h1").textContent()).toBe("This chat link is incomplete");
    expect(await problem.textContent()).toContain("user is missing");
    expect(await problem.textContent()).toContain("server is missing");
    await screenshot(page, "11-incomplete-link");
  });

  it("tells the user, and stops calling, when the service refuses their token", async () => {
    const foreign = await demoTenant("elsewhere").mintUserToken("alice");
    const { page, procedures } = await openChat("alice", { token: foreign });
    await waitForConnection(page, "stopped", 10_000);
    expect(await page.locator(".connection").textContent()).toBe("Offline");
    const alert = await page.getByRole("alert").textContent();
    expect(alert).toContain("sign in again");
    // A token of another tenant is not valid here; it has not expired.
    expect(alert).not.toContain("expired");
    // Long enough for several retries, were there any.
    await page.waitForTimeout(1_500);
    // One try each: the stream, and the receipts for the messages on screen; no retry.
    expect(procedures.toSorted()).toEqual(["SendReceipts", "WatchReceipts"]);
    await screenshot(page, "10-token-refused");
  });

  it("cannot call the service from an origin that is not allowed", async () => {
    const elsewhere = await startStaticServer({ dir: outDir });
    try {
      elsewhere.addHistory(history);
      const { page, logs } = await openChat("alice", { origin: elsewhere.origin });
      await waitForConnection(page, "reconnecting", 10_000);
      await expect
        .poll(() => logs.some((line) => /blocked by CORS policy/.test(line)), { timeout: 10_000 })
        .toBe(true);
      // No count ever arrived.
      expect(await readByText(page, "team-020")).toBe("Read by …");
      await screenshot(page, "09-disallowed-origin");
    } finally {
      await elsewhere.close();
    }
  });
});
