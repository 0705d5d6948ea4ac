import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Transport } from "@connectrpc/connect";
import { pino } from "pino";
import { MembershipService } from "../../gen/receipts/v1/membership_pb.js";
import { ConversationType, ReadReceiptService } from "../../gen/receipts/v1/receipts_pb.js";
import { type App, type Backend, openBackend, startApp } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { type Logger, silentLogger } from "../../src/logger.js";
import type { ReceiptStore } from "../../src/store/receipt-store.js";
import { minutes } from "./fixtures.js";

export interface OpsTestServer {
  readonly app: App;
  readonly backend: Backend;
  readonly baseUrl: string;
  readonly address: string;
  stop(): Promise<void>;
}

/**
 * Starts the real app on a free port with a fresh embedded store, like
 * startTestServer, but with a chosen logger and a hook to wrap the backend.
 */
export async function startOpsServer(
  options: {
    env?: Record<string, string>;
    logger?: Logger;
    wrap?: (backend: Backend) => Backend;
  } = {},
): Promise<OpsTestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "receipts-ops-"));
  const config = loadConfig({ RECEIPTS_PORT: "0", RECEIPTS_DATA_DIR: dataDir, ...options.env });
  const opened = await openBackend(config);
  const backend = options.wrap?.(opened) ?? opened;
  const app = await startApp(config, backend, options.logger ?? silentLogger);
  let stopped: Promise<void> | undefined;
  return {
    app,
    backend,
    baseUrl: `http://127.0.0.1:${app.port}`,
    address: `127.0.0.1:${app.port}`,
    stop() {
      stopped ??= app.stop().finally(() => rmSync(dataDir, { recursive: true, force: true }));
      return stopped;
    },
  };
}

/** startOpsServer with its store behind a HeldStore, so that a test can hold calls inside it. */
export async function startHeldOpsServer(
  env: Record<string, string> = {},
): Promise<{ server: OpsTestServer; held: HeldStore }> {
  let held: HeldStore | undefined;
  const server = await startOpsServer({
    env,
    wrap: (backend) => {
      held = new HeldStore(backend.store);
      return { ...backend, store: held.store };
    },
  });
  if (held === undefined) throw new Error("the backend was not wrapped");
  return { server, held };
}

/**
 * Group "g" with the sender "s" and `readers` from minute 0, and one message
 * of "s" per id, a minute apart from minute 1.
 */
export async function seedGroupG(
  transport: Transport,
  readers: readonly string[],
  messageIds: readonly string[],
): Promise<void> {
  await createClient(MembershipService, transport).addMembers({
    groupId: "g",
    userIds: ["s", ...readers],
    joinedAt: timestampFromMs(minutes(0)),
  });
  await createClient(ReadReceiptService, transport).trackMessages({
    messages: messageIds.map((messageId, i) => ({
      conversationId: "g",
      conversationType: ConversationType.GROUP,
      messageId,
      senderId: "s",
      sentAt: timestampFromMs(minutes(1 + i)),
    })),
  });
}

export interface Hold {
  /** Resolves when a call reached the store and is being held. */
  readonly reached: Promise<void>;
  /** Lets the held call go on to the real store. */
  release(): void;
}

/**
 * A real store whose next call to a chosen method waits until the test
 * releases it: a call held "in flight" at a known point, without mocks.
 */
export class HeldStore {
  readonly store: ReceiptStore;
  readonly #holds = new Map<string, { arrive: () => void; released: Promise<void> }>();

  constructor(inner: ReceiptStore) {
    const holds = this.#holds;
    this.store = new Proxy(inner, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property, target);
        if (typeof value !== "function" || typeof property !== "string") return value;
        return async (...args: unknown[]) => {
          const hold = holds.get(property);
          if (hold !== undefined) {
            holds.delete(property);
            hold.arrive();
            await hold.released;
          }
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  }

  /** Holds the next call of `method`. */
  hold(method: keyof ReceiptStore): Hold {
    let arrive = () => {};
    let release = () => {};
    const reached = new Promise<void>((resolve) => {
      arrive = resolve;
    });
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.#holds.set(method, { arrive, released });
    return { reached, release };
  }
}

/** One JSON line of a pino log. */
export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

/** A pino logger at `level` whose lines are kept, parsed, in `lines`. */
export function capturingLogger(level: string): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString().split("\n")) {
        if (text !== "") lines.push(JSON.parse(text) as LogLine);
      }
      done();
    },
  });
  return { logger: pino({ level }, sink), lines };
}

/** Reads /metrics. */
export async function scrape(baseUrl: string): Promise<string> {
  const response = await fetch(`${baseUrl}/metrics`);
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`);
  return response.text();
}

/**
 * The value of one series in the Prometheus text format, or 0 when absent.
 * `labels` must hold every label of the series, in any order.
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels)
    .map(([key, value]) => `${key}="${value}"`)
    .sort()
    .join(",");
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const got = (match[2] ?? "")
      .split(/,(?=[a-zA-Z_]\w*=")/)
      .filter((pair) => pair !== "")
      .sort()
      .join(",");
    if (got === wanted) return Number(match[3]);
  }
  return 0;
}

/** Polls `probe` every 50 ms until it returns true, for at most `ms`. */
export async function eventually(
  probe: () => Promise<boolean> | boolean,
  ms = 5_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
