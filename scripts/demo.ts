/**
 * `npm run demo`: builds the web client, starts the service with the embedded
 * store, seeds a group conversation through the API, serves the page from a
 * second origin (so the browser really goes through CORS) and prints a link
 * per user. The e2e tests reuse the building blocks exported here.
 *
 * Runs directly on Node 24 (type stripping): it imports no TypeScript module.
 *
 * Longer than the ~400 lines a file keeps to, for a reason: it is the one script a new user
 * reads to see the whole product run (build, start, seed, serve, link), top to bottom, and the
 * e2e tests import those same steps from it; split, the walk-through would be spread over
 * files the demo reader has no reason to open.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { extname, join, normalize, sep } from "node:path";
import { createInterface } from "node:readline";
import { SignJWT } from "jose";
import { build } from "vite";

const root = join(import.meta.dirname, "..");

export interface Person {
  readonly id: string;
  readonly name: string;
}

/** What the page loads from the messaging backend: the receipt service never sees message text. */
export interface ConversationHistory {
  readonly conversation: { readonly id: string; readonly title: string };
  readonly people: readonly Person[];
  readonly messages: readonly {
    readonly id: string;
    readonly senderId: string;
    readonly text: string;
    readonly sentAt: string;
  }[];
}

export const demoPeople: readonly Person[] = [
  { id: "alice", name: "Alice Martin" },
  { id: "bob", name: "Bob Chen" },
  { id: "carol", name: "Carol Diaz" },
  { id: "dave", name: "Dave Okafor" },
  { id: "erin", name: "Erin Walsh" },
  { id: "frank", name: "Frank Ito" },
];

/** [sender, minutes before the seeding, text]; ids are team-001, team-002, … in this order. */
const script: readonly (readonly [string, number, string])[] = [
  [
    "carol",
    1300,
    "Release notes draft is in the shared folder. Comments welcome before tomorrow's standup.",
  ],
  ["alice", 1296, "Thanks Carol! I'll go through them tonight."],
  ["dave", 1280, "Staging is green again after the cache fix."],
  ["alice", 1275, "Nice. Can we freeze main tomorrow morning?"],
  ["frank", 1272, "Works for me."],
  ["erin", 190, "Hi all! QA found one flaky test in checkout, looking into it."],
  ["alice", 186, "Is it the payment timeout one again?"],
  ["erin", 184, "Yes, it only fails on the slow runner. I'll bump the timeout and add a retry."],
  [
    "frank",
    170,
    "Design sign-off for the new onboarding screens is done. Figma link is in the ticket.",
  ],
  ["alice", 165, "Great work Frank. Bob, can you take the final pass on the copy?"],
  ["bob", 160, "On it, I'll have comments within the hour."],
  ["carol", 120, "Release notes are updated with everyone's comments."],
  ["dave", 95, "Heads-up: the migration takes about 4 minutes on a production-sized dataset."],
  ["alice", 92, "Good to know. Let's run it before the freeze then."],
  ["alice", 91, "Dave, could you put the exact command in the runbook?"],
  ["dave", 80, "Done, it's under “Release day”, step 3."],
  ["erin", 60, "Checkout tests are stable now: 50 runs, 0 failures."],
  ["frank", 45, "App store screenshots are exported."],
  ["bob", 30, "Copy review done, two small fixes pushed."],
  ["alice", 20, "Thanks everyone, we're go for the release this afternoon."],
  ["alice", 19, "Please read the runbook once more before the release call."],
  ["carol", 12, "Will do!"],
  ["dave", 8, "Read it, all good from my side."],
  ["erin", 5, "Same here. See you on the call!"],
];

/** How far each member had read before the demo starts (bob has read nothing yet). */
const readUpTo: Readonly<Record<string, string>> = {
  carol: "team-012",
  dave: "team-016",
  erin: "team-017",
  frank: "team-005",
};

export function demoHistory(now: number): ConversationHistory {
  return {
    conversation: { id: "team", title: "Launch crew" },
    people: demoPeople,
    messages: script.map(([senderId, minutesAgo, text], i) => ({
      id: `team-${String(i + 1).padStart(3, "0")}`,
      senderId,
      text,
      sentAt: new Date(now - minutesAgo * 60_000).toISOString(),
    })),
  };
}

/**
 * Seeds the demo conversation the way a messaging backend would: members,
 * then the messages that ask for receipts, then what each member had already
 * read. Plain Connect JSON calls; `headers` carries the backend's credentials
 * when the service requires them.
 */
export async function seedDemo(
  baseUrl: string,
  options: { now?: number; headers?: Record<string, string> } = {},
): Promise<ConversationHistory> {
  const now = options.now ?? Date.now();
  const history = demoHistory(now);
  const call = async (method: string, body: unknown) => {
    const response = await fetch(`${baseUrl}/receipts.v1.${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...options.headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const answer = (await response.json()) as { code?: string; message?: string };
    if (!response.ok) throw new Error(`${method}: ${answer.code} ${answer.message}`);
    return answer;
  };
  const conversationId = history.conversation.id;
  await call("MembershipService/AddMembers", {
    groupId: conversationId,
    userIds: history.people.map((p) => p.id),
    joinedAt: new Date(now - 30 * 86_400_000).toISOString(),
  });
  await call("ReadReceiptService/TrackMessages", {
    messages: history.messages.map((m) => ({
      conversationId,
      conversationType: "CONVERSATION_TYPE_GROUP",
      messageId: m.id,
      senderId: m.senderId,
      sentAt: m.sentAt,
    })),
  });
  for (const [readerId, messageId] of Object.entries(readUpTo)) {
    const upTo = history.messages.find((m) => m.id === messageId)?.sentAt;
    await call("ReadReceiptService/MarkConversationRead", {
      conversationId,
      readerId,
      readUpTo: upTo,
    });
  }
  return history;
}

/**
 * A tenant made up for one demo run: an API key for the seeding (the
 * messaging backend's credential) and an HS256 key that signs short-lived
 * user tokens, minted here as a chat backend would mint them at sign-in.
 */
export interface DemoTenant {
  /** For RECEIPTS_TENANTS. */
  readonly tenantsJson: string;
  /** Server credentials, for the seeding only; never given to a page. */
  readonly serviceHeaders: Record<string, string>;
  mintUserToken(userId: string): Promise<string>;
}

export function demoTenant(id = "demo"): DemoTenant {
  const apiKey = randomBytes(32).toString("base64url");
  const secret = randomBytes(32).toString("base64url");
  const key = new TextEncoder().encode(secret);
  return {
    tenantsJson: JSON.stringify({
      tenants: [{ id, apiKeys: [apiKey], userTokens: { keys: [{ alg: "HS256", secret }] } }],
    }),
    serviceHeaders: { authorization: `Bearer ${apiKey}` },
    mintUserToken: (userId) =>
      new SignJWT({ tenant: id })
        .setProtectedHeader({ alg: "HS256" })
        .setSubject(userId)
        .setIssuedAt()
        .setExpirationTime("1h")
        .sign(key),
  };
}

/** Builds web/ with Vite into outDir. */
export async function buildWeb(outDir: string): Promise<void> {
  await build({
    root: join(root, "web"),
    configFile: false,
    logLevel: "warn",
    build: { outDir, emptyOutDir: true, target: "es2022" },
  });
}

export interface StaticServer {
  readonly origin: string;
  /** Serves a conversation's history at /conversations/<id>.json. */
  addHistory(history: ConversationHistory): void;
  close(): Promise<void>;
}

const contentTypes: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

/**
 * Serves the built page, and each conversation's history at
 * /conversations/<id>.json, the stand-in for the messaging backend.
 */
export async function startStaticServer(options: {
  dir: string;
  host?: string;
  port?: number;
}): Promise<StaticServer> {
  const histories = new Map<string, ConversationHistory>();
  const base = normalize(options.dir);
  const server = http.createServer(async (request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? "/", "http://x").pathname);
    const send = (status: number, type: string, body: string | Buffer) => {
      response.writeHead(status, { "content-type": type, "cache-control": "no-store" });
      response.end(body);
    };
    if (request.method !== "GET" && request.method !== "HEAD") return send(405, "text/plain", "");
    if (path.startsWith("/conversations/")) {
      const history = histories.get(path.slice("/conversations/".length));
      if (history === undefined) return send(404, "text/plain", "no such conversation");
      return send(200, contentTypes[".json"] ?? "", JSON.stringify(history));
    }
    const file = normalize(join(base, path === "/" ? "index.html" : path));
    if (!file.startsWith(base + sep)) return send(404, "text/plain", "not found");
    try {
      if (!(await stat(file)).isFile()) return send(404, "text/plain", "not found");
      send(200, contentTypes[extname(file)] ?? "application/octet-stream", await readFile(file));
    } catch {
      send(404, "text/plain", "not found");
    }
  });
  const host = options.host ?? "127.0.0.1";
  server.listen(options.port ?? 0, host);
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://${host}:${port}`,
    addHistory: (history) => histories.set(`${history.conversation.id}.json`, history),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The page's address for one user. */
export function chatLink(
  pageOrigin: string,
  options: { user: string; conversation: string; server: string; token?: string },
): string {
  const query = new URLSearchParams({
    user: options.user,
    conversation: options.conversation,
    server: options.server,
  });
  if (options.token !== undefined) query.set("token", options.token);
  return `${pageOrigin}/?${query}`;
}

/** A failure of the demo told in one line, with its exit code (2: a port or setting to change). */
export class DemoError extends Error {
  readonly exitCode: number;
  // No parameter property: Node runs this file by stripping types only.
  constructor(message: string, exitCode: number) {
    super(message);
    this.exitCode = exitCode;
  }
}

const portInUse = (where: string, variable: string) =>
  new DemoError(
    `demo: cannot listen on ${where}: the port is in use by another process (npm start, another demo?); stop it or choose another port with ${variable}`,
    2,
  );

const pinoLevels: Readonly<Record<string, number>> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
};

/**
 * Starts the service and resolves once it logs that it listens on `port`: its own start line,
 * so a server already on that port is never mistaken for it. Its log lines from `logLevel` up
 * are passed on; it fails in one line when the service exits first.
 */
async function startDemoService(
  main: string,
  port: number,
  env: Record<string, string>,
  logLevel: string,
): Promise<ChildProcess> {
  const service = spawn(process.execPath, [main], {
    // The demo reads the start line, so JSON whatever the terminal; info to see that line.
    env: { ...process.env, ...env, RECEIPTS_LOG_FORMAT: "json", RECEIPTS_LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const shownFrom = pinoLevels[logLevel] ?? pinoLevels.warn ?? 40;
  // Held until the service is ready: a port it cannot take is told once, in the demo's words.
  let errors: string | undefined = "";
  service.stderr?.on("data", (chunk: Buffer) => {
    if (errors === undefined) process.stderr.write(chunk);
    else errors += chunk.toString();
  });
  return new Promise((resolve, reject) => {
    const exited = (code: number | null, signal: string | null) => {
      if (/cannot listen on .*the port is in use/.test(errors ?? "")) {
        reject(portInUse(`127.0.0.1:${port}`, "DEMO_SERVICE_PORT"));
        return;
      }
      process.stderr.write(errors ?? "");
      const how = signal ?? `exit code ${code}`;
      reject(new DemoError(`demo: the service stopped (${how}) before it was ready`, 1));
    };
    // "close", not "exit": by then its stderr has been read to the end.
    service.once("close", exited);
    createInterface({ input: service.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      let entry: { level?: number; port?: number; url?: string } = {};
      try {
        entry = JSON.parse(line);
      } catch {
        process.stdout.write(`${line}\n`);
        return;
      }
      if ((entry.level ?? 0) >= shownFrom) process.stdout.write(`${line}\n`);
      if (entry.url !== undefined && entry.port === port) {
        service.off("close", exited);
        process.stderr.write(errors ?? "");
        errors = undefined;
        resolve(service);
      }
    });
  });
}

export interface DemoOptions {
  readonly servicePort: number;
  readonly webPort: number;
  /** The service's log level (RECEIPTS_LOG_LEVEL); warn by default. */
  readonly logLevel: string;
  /** The built service's entry point. */
  readonly serviceMain: string;
  /** Where the page is built. */
  readonly webOutDir: string;
}

/** The demo's settings from its environment variables (README, "Browser client"). */
export function demoOptions(env: Readonly<Record<string, string | undefined>>): DemoOptions {
  const port = (name: string, fallback: number) => {
    const value = Number(env[name] || fallback);
    if (!Number.isInteger(value) || value < 1 || value > 65_535) {
      throw new DemoError(`demo: ${name}=${env[name]}: must be a port from 1 to 65535`, 2);
    }
    return value;
  };
  return {
    servicePort: port("DEMO_SERVICE_PORT", 8787),
    webPort: port("DEMO_WEB_PORT", 8788),
    logLevel: env.RECEIPTS_LOG_LEVEL || "warn",
    serviceMain: join(root, "dist", "src", "main.js"),
    webOutDir: join(root, "web", "dist"),
  };
}

/**
 * Runs the demo until Ctrl-C, or until its service stops on its own: then the demo stops too,
 * saying so, rather than leave a page whose service is gone.
 */
export async function runDemo(options: DemoOptions): Promise<void> {
  const host = "127.0.0.1";
  const { servicePort, webPort } = options;
  const serviceUrl = `http://${host}:${servicePort}`;

  console.log("Building the web app…");
  await buildWeb(options.webOutDir);
  // The page's port first: a taken one stops the demo before any service starts.
  const web = await startStaticServer({ dir: options.webOutDir, host, port: webPort }).catch(
    (error: NodeJS.ErrnoException) => {
      throw error.code === "EADDRINUSE" ? portInUse(`${host}:${webPort}`, "DEMO_WEB_PORT") : error;
    },
  );

  const dataDir = mkdtempSync(join(tmpdir(), "receipts-demo-"));
  const tenant = demoTenant();
  let service: ChildProcess | undefined;
  const stop = async () => {
    await web.close();
    if (service !== undefined && service.exitCode === null && service.signalCode === null) {
      service.kill("SIGTERM");
      await once(service, "exit");
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    service = await startDemoService(
      options.serviceMain,
      servicePort,
      {
        RECEIPTS_HOST: host,
        RECEIPTS_PORT: String(servicePort),
        RECEIPTS_DATA_DIR: dataDir,
        RECEIPTS_CORS_ORIGINS: `http://${host}:${webPort},http://localhost:${webPort}`,
        RECEIPTS_TENANTS: tenant.tenantsJson,
      },
      options.logLevel,
    );
    web.addHistory(await seedDemo(serviceUrl, { headers: tenant.serviceHeaders }));
  } catch (error) {
    await stop();
    throw error instanceof DemoError
      ? error
      : new DemoError(`demo: seeding the demo conversation failed: ${(error as Error).message}`, 1);
  }
  const died = new Promise<DemoError>((resolve) =>
    service?.once("exit", (code, signal) =>
      resolve(
        new DemoError(
          `demo: the service stopped on its own (${signal ?? `exit code ${code}`}); the demo stops too`,
          1,
        ),
      ),
    ),
  );
  const interrupted = new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });

  const link = async (user: string) =>
    chatLink(web.origin, {
      user,
      conversation: "team",
      server: serviceUrl,
      token: await tenant.mintUserToken(user),
    });
  const others = [];
  for (const person of demoPeople.slice(2))
    others.push(`  ${person.name}: ${await link(person.id)}`);
  console.log(`
Read-receipt demo: service on ${serviceUrl} (tenant "demo", embedded store in ${dataDir}),
page on ${web.origin}. Each link carries a user token valid for one hour.
Open two windows side by side:

  Alice (sends most messages, sees "Read by N of M" change live):
    ${await link("alice")}

  Bob (has read nothing yet; scroll up to mark messages read):
    ${await link("bob")}

Other members:
${others.join("\n")}

Ctrl-C stops everything.
`);
  const ended = await Promise.race([died, interrupted]);
  await stop();
  if (ended !== undefined) throw ended;
}

/** `npm run demo`: a failure is one line on stderr and the demo's exit code, never a stack. */
export async function demoMain(overrides: Partial<DemoOptions> = {}): Promise<never> {
  try {
    await runDemo({ ...demoOptions(process.env), ...overrides });
    process.exit(0);
  } catch (error) {
    if (!(error instanceof DemoError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(error.exitCode);
  }
}

if (import.meta.main) await demoMain();
