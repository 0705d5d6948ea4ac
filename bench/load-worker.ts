import { DatabaseSync } from "node:sqlite";
import type * as grpc from "@grpc/grpc-js";
import { Client, types } from "cassandra-driver";
import { Redis } from "ioredis";
import { ReadFilter, ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { migrations } from "../src/store/sqlite/schema.js";
import { BenchService } from "./gen/bench/v1/bench_pb.js";
import { grpcClient, serverStream, unary } from "./grpc-load-client.js";
import { nowMs } from "./latency-stats.js";
import type {
  LoadTask,
  MixResult,
  MixWindow,
  StreamsResult,
  ThroughputResult,
} from "./load-tasks.js";
import { callCount, groupId, messageId, receiptCall, userId } from "./workload.js";

/**
 * A load process: started by the benchmark (pinned away from the server's
 * core), it receives one task over IPC, runs it and sends back what it saw.
 */
const send = (message: unknown) => {
  // With a callback, a parent that already hung up is not an uncaught error.
  if (process.connected) process.send?.(message, undefined, {}, () => undefined);
};
process.on("disconnect", () => process.exit(0));

process.once("message", (message: { start: LoadTask }) => {
  run(message.start).then(
    (result) => send({ result }),
    (error: unknown) => send({ failed: error instanceof Error ? error.stack : String(error) }),
  );
});

async function run(task: LoadTask): Promise<unknown> {
  switch (task.kind) {
    case "send":
      return sendReceipts(task);
    case "streams":
      return openStreams(task);
    case "redis-read":
      return redisRead(task);
    case "sqlite-ceiling":
      return sqliteCeiling(task);
    case "cassandra-ceiling":
      return cassandraCeiling(task);
    case "mix":
      return mix(task);
  }
}

/** Runs `work` from `concurrency` loops until `next` runs out or the time is up. */
async function closedLoop(
  concurrency: number,
  durationMs: number,
  work: () => Promise<number> | undefined,
): Promise<ThroughputResult> {
  const latenciesMs: number[] = [];
  let calls = 0;
  let receipts = 0;
  let errors = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const deadline = started + durationMs;
  const loop = async () => {
    while (performance.now() < deadline) {
      const at = performance.now();
      const call = work();
      if (call === undefined) return;
      try {
        // Not `receipts += await call`: that reads `receipts` before awaiting, so concurrent
        // loops would overwrite each other's additions.
        const acknowledged = await call;
        receipts += acknowledged;
        calls += 1;
        latenciesMs.push(performance.now() - at);
      } catch (error) {
        errors += 1;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  const elapsedMs = performance.now() - started;
  return { calls, receipts, errors, elapsedMs, latenciesMs, ...(firstError ? { firstError } : {}) };
}

async function sendReceipts(task: Extract<LoadTask, { kind: "send" }>): Promise<ThroughputResult> {
  const clients = Array.from({ length: task.connections }, (_, i) =>
    grpcClient(ReadReceiptService, task.address, i),
  );
  const total = callCount(task.workload);
  let next = task.worker;
  let turn = 0;
  const result = await closedLoop(task.concurrency, task.durationMs, () => {
    if (next >= total) return undefined;
    const call = receiptCall(task.workload, next);
    next += task.workers;
    const client = clients[turn++ % clients.length] as grpc.Client;
    return unary<{ receipts: unknown[] }>(client, "sendReceipts", {
      conversationId: call.conversationId,
      readerId: call.readerId,
      messageIds: call.messageIds,
    }).then(() => call.messageIds.length);
  });
  for (const client of clients) client.close();
  return result;
}

/** Opens the streams, answers `ready`, records arrivals until asked to `collect`. */
async function openStreams(task: Extract<LoadTask, { kind: "streams" }>): Promise<undefined> {
  const service = task.method === "watch" ? ReadReceiptService : BenchService;
  const method = task.method === "watch" ? "watchReceipts" : "subscribe";
  const clients = Array.from({ length: task.connections }, (_, i) =>
    grpcClient(service, task.address, i),
  );
  const arrivals: Record<string, number[]> = {};
  const calls: grpc.ClientReadableStream<unknown>[] = [];
  let opened = 0;
  let failed = 0;
  let received = 0;
  let firstError: string | undefined;
  const started = performance.now();
  let settled = 0;
  await new Promise<void>((resolve) => {
    const settle = () => {
      settled += 1;
      if (settled === task.streams) {
        clearInterval(stalled);
        resolve();
      }
    };
    // Streams the server never answers (refused, queued behind a limit) must not hang the run;
    // but a server still working through tens of thousands of opens may answer none for a
    // while (the first full run on Cassandra gave up after 15 s with 0 of 12,500 answered,
    // then the server counted 49,944 open).
    let seen = 0;
    const stalled = setInterval(() => {
      if (settled === seen) {
        clearInterval(stalled);
        resolve();
      }
      seen = settled;
    }, 60_000);
    for (let i = 0; i < task.streams; i++) {
      const client = clients[i % clients.length] as grpc.Client;
      const request =
        task.method === "watch"
          ? { conversationIds: [task.conversationIds[i % task.conversationIds.length]] }
          : {};
      const call = serverStream<Record<string, unknown>>(client, method, request);
      calls.push(call);
      let first = true;
      call.on("data", (message: Record<string, unknown>) => {
        const at = nowMs();
        if (first) {
          first = false;
          opened += 1;
          settle();
          return;
        }
        received += 1;
        if (!task.record) return;
        const key = eventKey(message);
        let times = arrivals[key];
        if (times === undefined) {
          times = [];
          arrivals[key] = times;
        }
        times.push(at);
      });
      call.on("error", (error: grpc.ServiceError) => {
        if (error.code === 1) return; // cancelled by us
        if (first) {
          first = false;
          failed += 1;
          firstError ??= error.message;
          settle();
        }
      });
    }
  });
  const openMs = performance.now() - started;
  if (settled < task.streams) firstError ??= `${task.streams - settled} streams never answered`;
  send({ ready: { opened, failed, openMs, ...(firstError ? { firstError } : {}) } });
  await new Promise<void>((resolve) => process.once("message", () => resolve()));
  const result: StreamsResult = {
    opened,
    failed,
    openMs,
    arrivals,
    received,
    ...(firstError ? { firstError } : {}),
  };
  send({ result });
  await new Promise<void>((resolve) => process.once("message", () => resolve()));
  for (const call of calls) call.cancel();
  for (const client of clients) client.close();
  return undefined;
}

function eventKey(message: Record<string, unknown>): string {
  if (typeof message.sequence === "bigint") return String(message.sequence);
  const update = message.update as { case?: string; value?: { receipt?: unknown } } | undefined;
  const receipt = update?.value?.receipt as { messageId?: string } | undefined;
  return `${update?.case}:${receipt?.messageId ?? ""}`;
}

async function redisRead(
  task: Extract<LoadTask, { kind: "redis-read" }>,
): Promise<ThroughputResult> {
  const redis = new Redis(task.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  // Paced like h2load --rps: each loop sends one call per interval; the wait is not latency.
  const intervalMs = task.rate > 0 ? (1000 * task.concurrency) / task.rate : 0;
  const latenciesMs: number[] = [];
  let calls = 0;
  const started = performance.now();
  const loop = async () => {
    let slot = performance.now();
    while (performance.now() - started < task.durationMs) {
      const at = performance.now();
      const pipeline = redis.pipeline();
      for (const key of task.keys) pipeline.scard(key);
      await pipeline.exec();
      latenciesMs.push(performance.now() - at);
      calls += 1;
      slot += intervalMs;
      const wait = slot - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  };
  await Promise.all(Array.from({ length: task.concurrency }, loop));
  const elapsedMs = performance.now() - started;
  redis.disconnect();
  return { calls, receipts: 0, errors: 0, elapsedMs, latenciesMs };
}

function sqliteCeiling(task: Extract<LoadTask, { kind: "sqlite-ceiling" }>): ThroughputResult {
  const db = new DatabaseSync(task.path);
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = FULL");
  for (const migration of migrations) db.exec(migration);
  const w = task.workload;
  const insertMessage = db.prepare(
    `INSERT INTO messages (tenant, message_id, conversation_id, conversation_type, sender_id, sent_at, receiver_id)
     VALUES ('t', ?, ?, 'group', ?, ?, '')`,
  );
  db.exec("BEGIN");
  for (let g = 0; g < w.groups; g++) {
    for (let k = 0; k < w.messagesPerGroup; k++) {
      insertMessage.run(messageId(w, g, k), groupId(w, g), userId(w, g, 0), w.sentAt);
    }
  }
  db.exec("COMMIT");
  // The rows the embedded store writes per receipt, in one transaction per call.
  const insertReceipt = db.prepare(
    `INSERT OR IGNORE INTO receipts (tenant, message_id, reader_id, read_at, conversation_id, sent_at)
     VALUES ('t', ?, ?, ?, ?, ?)`,
  );
  const bump = db.prepare(
    "UPDATE messages SET read_count = read_count + 1 WHERE tenant = 't' AND message_id = ?",
  );
  const latenciesMs: number[] = [];
  let calls = 0;
  let receipts = 0;
  const total = callCount(w);
  const started = performance.now();
  while (performance.now() - started < task.durationMs && calls < total) {
    const call = receiptCall(w, calls);
    const at = performance.now();
    db.exec("BEGIN IMMEDIATE");
    for (const id of call.messageIds) {
      insertReceipt.run(id, call.readerId, Date.now(), call.conversationId, w.sentAt);
      bump.run(id);
    }
    db.exec("COMMIT");
    latenciesMs.push(performance.now() - at);
    calls += 1;
    receipts += call.messageIds.length;
  }
  const elapsedMs = performance.now() - started;
  db.close();
  return { calls, receipts, errors: 0, elapsedMs, latenciesMs };
}

async function cassandraCeiling(
  task: Extract<LoadTask, { kind: "cassandra-ceiling" }>,
): Promise<ThroughputResult> {
  const client = new Client({
    contactPoints: [...task.contactPoints],
    localDataCenter: task.localDataCenter,
    encoding: { useBigIntAsLong: true },
  });
  await client.connect();
  const consistency = types.consistencies[camel(task.consistency) as "localQuorum"];
  const options = { prepare: true, consistency, isIdempotent: true };
  const ks = task.keyspace;
  const reader = `INSERT INTO ${ks}.readers_by_message (tenant, message_id, reader_id, read_at) VALUES (?, ?, ?, ?)`;
  const byReader = `INSERT INTO ${ks}.receipts_by_reader
    (tenant, conversation_id, reader_id, sent_at, message_id, read_at, write_ts) VALUES (?, ?, ?, ?, ?, ?, ?)`;
  const w = task.workload;
  const tenant = `${w.prefix}ceiling`;
  const total = callCount(w);
  let call = 0;
  let pending: { id: string; call: ReturnType<typeof receiptCall> }[] = [];
  // One receipt per loop turn, so that `concurrency` receipts are in flight, as in the service.
  const nextReceipt = () => {
    if (pending.length === 0) {
      if (call >= total) return undefined;
      const c = receiptCall(w, call++);
      pending = c.messageIds.map((id) => ({ id, call: c }));
    }
    return pending.shift();
  };
  const result = await closedLoop(task.concurrency, task.durationMs, () => {
    const receipt = nextReceipt();
    if (receipt === undefined) return undefined;
    const readAt = BigInt(Date.now());
    const ts = BigInt(Date.now() * 1000);
    const { id, call: c } = receipt;
    const rows = async () => {
      await Promise.all([
        client.execute(reader, [tenant, id, c.readerId, readAt], options),
        client.execute(
          byReader,
          [tenant, c.conversationId, c.readerId, BigInt(w.sentAt), id, readAt, ts],
          options,
        ),
      ]);
      return 1;
    };
    return rows();
  });
  await client.shutdown();
  return result;
}

const camel = (name: string) =>
  name.toLowerCase().replace(/_(\w)/g, (_, c: string) => c.toUpperCase());

/** Open-loop mixed load: each kind paced at its rate; latency from the moment a call is sent. */
async function mix(task: Extract<LoadTask, { kind: "mix" }>): Promise<MixResult> {
  const client = grpcClient(ReadReceiptService, task.address, task.worker);
  const w = task.workload;
  const total = callCount(w);
  let nextSend = task.worker;
  let firstError: string | undefined;
  const windows: MixWindow[] = [];
  const started = nowMs();
  const windowOf = (at: number): MixWindow => {
    const index = Math.floor((at - started) / task.windowMs);
    while (windows.length <= index) {
      windows.push({
        startMs: windows.length * task.windowMs,
        latenciesMs: { send: [], get: [], list: [] },
        errors: 0,
      });
    }
    return windows[index] as MixWindow;
  };
  const issue = (kind: "send" | "get" | "list", request: () => Promise<unknown>) => {
    const at = nowMs();
    request().then(
      () => windowOf(at).latenciesMs[kind].push(nowMs() - at),
      (error: unknown) => {
        (windowOf(at) as { errors: number }).errors += 1;
        firstError ??= error instanceof Error ? error.message : String(error);
      },
    );
  };
  let seq = 0;
  const kinds = {
    send: () => {
      if (nextSend >= total) nextSend = task.worker; // wrapped around: repeats are idempotent
      const call = receiptCall(w, nextSend);
      nextSend += task.workers;
      return unary(client, "sendReceipts", {
        conversationId: call.conversationId,
        readerId: call.readerId,
        messageIds: call.messageIds,
      });
    },
    get: () => {
      const g = seq++ % w.groups;
      return unary(client, "getReceipts", {
        conversationId: groupId(w, g),
        messageIds: Array.from({ length: Math.min(10, w.messagesPerGroup) }, (_, k) =>
          messageId(w, g, k),
        ),
      });
    },
    list: () => {
      const g = seq++ % w.groups;
      return unary(client, "listReadMembers", {
        conversationId: groupId(w, g),
        messageId: messageId(w, g, 0),
        filter: seq % 2 === 0 ? ReadFilter.READ : ReadFilter.UNREAD,
        pageSize: 200,
      });
    },
  };
  const timers = (Object.keys(kinds) as (keyof typeof kinds)[]).map((kind) => {
    const rate = task.rates[kind];
    if (rate <= 0) return undefined;
    // Ticks of 10 ms, each sending the calls due since the start.
    let sent = 0;
    return setInterval(() => {
      const due = Math.floor(((nowMs() - started) / 1000) * rate);
      while (sent < due) {
        sent += 1;
        issue(kind, kinds[kind]);
      }
    }, 10);
  });
  await new Promise((resolve) => setTimeout(resolve, task.durationMs));
  for (const timer of timers) if (timer) clearInterval(timer);
  await new Promise((resolve) => setTimeout(resolve, 2_000)); // let the last calls finish
  client.close();
  return {
    windows: windows.slice(0, Math.ceil(task.durationMs / task.windowMs)),
    ...(firstError ? { firstError } : {}),
  };
}
