/**
 * Measures the memory one idle WatchReceipts stream costs the server.
 *
 *   npm run build && node scripts/measure-watch-memory.ts [streams=10000] [embedded|redis]
 *
 * The service runs in a child process (started with --expose-gc, so that every reading
 * follows a full collection) and is measured before, with, and after `streams` idle
 * streams, opened over the network through HTTP/2 connections of 1,000 streams each. Only
 * the server's memory is measured: the clients live in this process. Runs directly on
 * Node 24 (type stripping); the service is imported from dist/.
 */
import { fork } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";

const root = join(import.meta.dirname, "..");
const fromDist = async <T>(path: string): Promise<T> =>
  (await import(pathToFileURL(join(root, "dist", path)).href)) as T;

type Reading = { rss: number; heapUsed: number; external: number; arrayBuffers: number };
type Message = { port: number } | { memory: Reading };

async function serve(): Promise<void> {
  const { openBackend, startApp } = await fromDist<typeof import("../src/app.js")>("src/app.js");
  const { loadConfig } = await fromDist<typeof import("../src/config.js")>("src/config.js");
  const { createLogger } = await fromDist<typeof import("../src/logger.js")>("src/logger.js");
  const config = loadConfig(process.env);
  const logger = createLogger({ level: config.logLevel });
  const app = await startApp(config, await openBackend(config, logger), logger);
  const gc = (globalThis as { gc?: () => void }).gc;
  process.on("message", (message) => {
    if (message === "measure") {
      for (let i = 0; i < 3; i++) gc?.();
      const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage();
      process.send?.({ memory: { rss, heapUsed, external, arrayBuffers } } satisfies Message);
    } else if (message === "stop") {
      void app.stop().then(() => process.exit(0));
    }
  });
  process.send?.({ port: app.port } satisfies Message);
}

async function measure(streams: number, feed: string): Promise<void> {
  const { ReadReceiptService } = await fromDist<typeof import("../gen/receipts/v1/receipts_pb.js")>(
    "gen/receipts/v1/receipts_pb.js",
  );
  const dataDir = mkdtempSync(join(tmpdir(), "receipts-memory-"));
  const keyPrefix = `measure-watch-memory:${process.pid}:`;
  const child = fork(import.meta.filename, ["serve"], {
    execArgv: ["--expose-gc"],
    env: {
      ...process.env,
      RECEIPTS_PORT: "0",
      RECEIPTS_DATA_DIR: dataDir,
      RECEIPTS_CHANGE_FEED: feed,
      RECEIPTS_REDIS_KEY_PREFIX: keyPrefix,
      RECEIPTS_MAX_STREAMS: String(streams + 1_000),
      RECEIPTS_LOG_LEVEL: process.env.RECEIPTS_LOG_LEVEL ?? "silent",
    },
  });
  const next = async (): Promise<Message> => (await once(child, "message"))[0] as Message;
  const reading = async (): Promise<Reading> => {
    child.send("measure");
    const message = await next();
    if (!("memory" in message)) throw new Error("expected a memory reading");
    return message.memory;
  };
  const started = await next();
  if (!("port" in started)) throw new Error("expected the port");
  const baseUrl = `http://127.0.0.1:${started.port}`;
  const clients = Array.from({ length: Math.ceil(streams / 1_000) }, () =>
    createClient(ReadReceiptService, createGrpcTransport({ baseUrl })),
  );
  const abort = new AbortController();
  const open = async (count: number) => {
    const opened: Promise<unknown>[] = [];
    for (let i = 0; i < count; i++) {
      const client = clients[i % clients.length];
      if (client === undefined) throw new Error("no client");
      const stream = client
        .watchReceipts({ conversationIds: [`c${i % 100}`] }, { signal: abort.signal })
        [Symbol.asyncIterator]();
      opened.push(stream.next()); // the opening heartbeat: the stream is set up on the server
      // The rest of the stream is never read: an idle watcher.
      stream.next().catch(() => undefined);
    }
    await Promise.all(opened);
  };

  // Warm up code paths and the connections, so that only per-stream memory remains.
  await open(Math.min(streams, 200));
  const before = await reading();
  const startedAt = performance.now();
  await open(streams);
  const openMs = performance.now() - startedAt;
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const during = await reading();
  abort.abort();
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  const after = await reading();
  child.send("stop");
  await once(child, "exit");
  rmSync(dataDir, { recursive: true, force: true });
  if (feed === "redis") {
    const redis = new Redis(process.env.RECEIPTS_REDIS_URL ?? "redis://127.0.0.1:6379");
    for await (const keys of redis.scanStream({ match: `${keyPrefix}*` })) {
      if ((keys as string[]).length > 0) await redis.unlink(...(keys as string[]));
    }
    redis.disconnect();
  }

  const perStream = (key: keyof Reading) => Math.round((during[key] - before[key]) / streams);
  const mb = (bytes: number) => `${(bytes / 1_048_576).toFixed(1)} MB`;
  console.log(
    JSON.stringify(
      {
        feed,
        streams,
        connections: clients.length,
        openSeconds: Number((openMs / 1000).toFixed(2)),
        bytesPerStream: {
          rss: perStream("rss"),
          heapUsed: perStream("heapUsed"),
          external: perStream("external"),
        },
        before: { rss: mb(before.rss), heapUsed: mb(before.heapUsed) },
        during: { rss: mb(during.rss), heapUsed: mb(during.heapUsed) },
        afterClosing: { rss: mb(after.rss), heapUsed: mb(after.heapUsed) },
      },
      null,
      2,
    ),
  );
}

if (process.argv[2] === "serve") {
  await serve();
} else {
  await measure(Number(process.argv[2] ?? 10_000), process.argv[3] ?? "embedded");
}
