import { DatabaseSync } from "node:sqlite";
import { Client, types } from "cassandra-driver";
import { Redis } from "ioredis";
import { migrations } from "../src/store/sqlite/schema.js";
import { closedLoop } from "./closed-loop.js";
import type { LoadTask, ThroughputResult } from "./load-tasks.js";
import { callCount, groupId, messageId, receiptCall, userId } from "./workload.js";

/**
 * The ceilings' bare loops: the same rows as the service writes (or reads), straight to the
 * store's own client, with nothing of the service in between.
 */
export async function redisRead(
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

export function sqliteCeiling(
  task: Extract<LoadTask, { kind: "sqlite-ceiling" }>,
): ThroughputResult {
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

export async function cassandraCeiling(
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
