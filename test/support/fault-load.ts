import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Client as CassandraClient } from "cassandra-driver";
import { expect } from "vitest";
import { MembershipService } from "../../gen/receipts/v1/membership_pb.js";
import {
  ConversationType,
  ReadReceiptService,
  type WatchReceiptsResponse,
} from "../../gen/receipts/v1/receipts_pb.js";
import { defaultTenant } from "../../src/api/tenant-context.js";
import { CassandraReceiptStore } from "../../src/store/cassandra/cassandra-receipt-store.js";
import { minutes } from "./fixtures.js";

/**
 * Load with a record of every call, for fault tests in the style of Jepsen: each call is ok,
 * failed, or pending (no answer yet); after the fault, what the record promises is checked.
 */
export type Receipts = Client<typeof ReadReceiptService>;
type Update = WatchReceiptsResponse;

const clients = new Map<string, Receipts>();

/**
 * One client (one HTTP/2 connection) per instance for the whole file, as an application holds
 * it. A transport per call (as this harness had at first) opened thousands of connections, and
 * the SIGSTOP test then failed on a CANCEL error that no call of the test caught.
 */
export function grpc(baseUrl: string): Receipts {
  let client = clients.get(baseUrl);
  if (client === undefined) {
    client = createClient(ReadReceiptService, createGrpcTransport({ baseUrl }));
    clients.set(baseUrl, client);
  }
  return client;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface Call {
  readonly readerId: string;
  readonly messageId: string;
  readonly startedAt: number;
  outcome: "ok" | "failed" | "pending";
  endedAt?: number;
}

/**
 * A watcher that, whenever its stream ends, opens it again with the last resume token it
 * received, as a client library does; `client()` is asked at every (re)open, so a watcher can
 * move to another instance. `opened` resolves at the first heartbeat.
 */
export function watchResuming(client: () => Receipts, conversationId: string) {
  const abort = new AbortController();
  const updates: Update[] = [];
  const endings: string[] = [];
  let token = "";
  let opened!: () => void;
  const openedOnce = new Promise<void>((resolve) => {
    opened = resolve;
  });
  const done = (async () => {
    while (!abort.signal.aborted) {
      try {
        const request = { conversationIds: [conversationId], resumeToken: token };
        for await (const message of client().watchReceipts(request, { signal: abort.signal })) {
          if (message.resumeToken !== "") token = message.resumeToken;
          if (message.update.case === "heartbeat") opened();
          else updates.push(message);
        }
        endings.push("ended");
      } catch (error) {
        if (abort.signal.aborted) return;
        endings.push(ConnectError.from(error).code.toString());
        await sleep(100);
      }
    }
  })();
  return {
    updates,
    endings,
    opened: openedOnce,
    async stop() {
      abort.abort();
      await done;
    },
  };
}

/**
 * Fresh receipts, one per call, from `loops` concurrent callers until `stop()` says so.
 * `client(n)` gives the instance of a caller's n-th call: callers may spread over instances.
 */
export async function sendUntil(
  client: (n: number) => Receipts,
  group: string,
  pairs: Iterator<{ readerId: string; messageId: string }>,
  calls: Call[],
  stop: () => boolean,
  loops = 4,
): Promise<void> {
  let n = 0;
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (!stop()) {
        const next = pairs.next();
        if (next.done) return;
        const call: Call = { ...next.value, startedAt: Date.now(), outcome: "pending" };
        calls.push(call);
        try {
          await client(n++).sendReceipts(
            { conversationId: group, readerId: call.readerId, messageIds: [call.messageId] },
            { timeoutMs: 5_000 },
          );
          call.outcome = "ok";
        } catch {
          // Failed or timed out: the receipt may or may not have been stored.
          call.outcome = "failed";
        }
        call.endedAt = Date.now();
      }
    }),
  );
}

export function* receiptPairs(readers: readonly string[], messageIds: readonly string[]) {
  for (const messageId of messageIds) {
    for (const readerId of readers) yield { readerId, messageId };
  }
}

export const pairOf = (update: Update): string =>
  update.update.case === "receipt"
    ? `${update.update.value.readerId}/${update.update.value.receipt?.messageId}`
    : `horizon/${update.update.case}`;

/**
 * What the record promises of a watcher: every acknowledged receipt arrived (waiting up to
 * `withinMs` for the outbox), exactly once, and nothing arrived that was never sent. Stops it.
 */
export async function expectEveryAcknowledgedDelivered(
  watcher: ReturnType<typeof watchResuming>,
  calls: readonly Call[],
  withinMs = 45_000,
): Promise<void> {
  const wanted = new Set(
    calls.filter((c) => c.outcome === "ok").map((c) => `${c.readerId}/${c.messageId}`),
  );
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    const seen = new Set(watcher.updates.map(pairOf));
    if ([...wanted].every((pair) => seen.has(pair))) break;
    await sleep(200);
  }
  await sleep(500); // a duplicate would arrive now
  await watcher.stop();
  const delivered = watcher.updates.map(pairOf);
  const sent = new Set(calls.map((c) => `${c.readerId}/${c.messageId}`));
  expect([...wanted].filter((pair) => !delivered.includes(pair))).toEqual([]);
  expect(delivered.length).toBe(new Set(delivered).size); // exactly once
  expect(delivered.filter((pair) => !sent.has(pair))).toEqual([]);
}

/** Each message's true count lies between its acknowledged and its attempted receipts. */
export function expectCountsWithinRecord(
  truth: ReadonlyMap<string, number>,
  calls: readonly Call[],
): void {
  for (const [messageId, count] of truth) {
    const mine = calls.filter((c) => c.messageId === messageId);
    expect(count, messageId).toBeGreaterThanOrEqual(mine.filter((c) => c.outcome === "ok").length);
    expect(count, messageId).toBeLessThanOrEqual(mine.length);
  }
}

/** Read counts of `messageIds` as one instance answers them. */
export async function countsThrough(
  client: Receipts,
  group: string,
  messageIds: readonly string[],
): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (let i = 0; i < messageIds.length; i += 100) {
    const answer = await client.getReceipts({
      conversationId: group,
      messageIds: messageIds.slice(i, i + 100),
    });
    for (const receipt of answer.receipts) counts.set(receipt.messageId, receipt.readCount);
  }
  return counts;
}

/** A group of `readers` and the sender `s`, with `count` messages, through `baseUrl`. */
export async function seed(
  baseUrl: string,
  group: string,
  readers: readonly string[],
  count: number,
): Promise<string[]> {
  const transport = createGrpcTransport({ baseUrl });
  await createClient(MembershipService, transport).addMembers({
    groupId: group,
    userIds: ["s", ...readers],
    joinedAt: timestampFromMs(minutes(0)),
  });
  const messageIds = Array.from({ length: count }, (_, i) => `${group}-m${i}`);
  for (let i = 0; i < count; i += 100) {
    const messages = messageIds.slice(i, i + 100).map((messageId, k) => ({
      conversationId: group,
      conversationType: ConversationType.GROUP,
      messageId,
      senderId: "s",
      sentAt: timestampFromMs(minutes(1) + i + k),
    }));
    // Setting up, not under test: retried as the answer says (UNAVAILABLE: nothing recorded),
    // which a loaded cluster on 2 shared cores sometimes gives to a batch of 100.
    for (let attempt = 1; ; attempt++) {
      try {
        await createClient(ReadReceiptService, transport).trackMessages({ messages });
        break;
      } catch (error) {
        if (attempt === 5 || ConnectError.from(error).code !== Code.Unavailable) throw error;
        await sleep(1_000);
      }
    }
  }
  return messageIds;
}

/** The counts of `touched` (messages of a `seed`ed group) recounted from Cassandra's rows. */
export function recount(
  keyspace: { readonly client: CassandraClient; readonly keyspace: string },
  group: string,
  messageIds: readonly string[],
  touched: readonly string[],
): Promise<Map<string, number>> {
  const store = new CassandraReceiptStore(keyspace.client, {
    keyspace: keyspace.keyspace,
    localCacheEntries: 0,
  });
  return store.readCounts(
    defaultTenant,
    touched.map((messageId) => ({
      conversationId: group,
      conversationType: "group" as const,
      messageId,
      senderId: "s",
      sentAt: minutes(1) + messageIds.indexOf(messageId),
      receiverId: "",
    })),
  );
}
