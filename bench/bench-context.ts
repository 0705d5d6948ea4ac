import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import { ConversationType, ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { mapConcurrently } from "../src/store/map-concurrently.js";
import { BenchService, type StatsResponse } from "./gen/bench/v1/bench_pb.js";
import type { ServiceProcess } from "./processes.js";
import { groupId, messageId, userId, type Workload } from "./workload.js";

export type Mode = "quick" | "full";
export type BackendName = "embedded" | "cassandra";

/** What every scenario is handed: the running service, clients to it, and the run's settings. */
export interface BenchContext {
  readonly mode: Mode;
  readonly backend: BackendName;
  readonly service: ServiceProcess;
  readonly receipts: Client<typeof ReadReceiptService>;
  readonly membership: Client<typeof MembershipService>;
  readonly bench: Client<typeof BenchService>;
  /** Starts every id of this run. */
  readonly runId: string;
  readonly redisUrl: string;
  /** Redis keys of this run start with this (the service's RECEIPTS_REDIS_KEY_PREFIX too). */
  readonly redisPrefix: string;
  readonly cassandra: {
    readonly contactPoints: readonly string[];
    readonly localDataCenter: string;
    readonly keyspace: string;
    readonly consistency: string;
  };
  /** Where the embedded store lives, and scratch files (ceiling databases). */
  readonly scratchDir: string;
  /**
   * Another service process on the same store, with `env` added to the run's settings (a
   * tenants file, say); the caller stops it.
   */
  startService(env: Record<string, string>): Promise<ServiceProcess>;
  log(message: string): void;
}

/** Clients of the service; with an API key, as that tenant's service caller. */
export function connectClients(address: string, apiKey?: string) {
  // One HTTP/2 connection (gRPC over h2c) for the benchmark's own setup and probe calls.
  const transport = createGrpcTransport({
    baseUrl: `http://${address}`,
    ...(apiKey === undefined
      ? {}
      : {
          interceptors: [
            (next) => (request) => {
              request.header.set("authorization", `Bearer ${apiKey}`);
              return next(request);
            },
          ],
        }),
  });
  return {
    receipts: createClient(ReadReceiptService, transport),
    membership: createClient(MembershipService, transport),
    bench: createClient(BenchService, transport),
  };
}

/**
 * Creates the workload's groups, members and messages through the API; with tenants, each
 * group through its tenant's clients (`clientsOf`).
 */
export async function seedWorkload(
  context: BenchContext,
  w: Workload,
  clientsOf: (group: number) => BenchContext = () => context,
): Promise<void> {
  const groups = Array.from({ length: w.groups }, (_, g) => g);
  await mapConcurrently(groups, 8, async (g) => {
    await addMembers(
      clientsOf(g),
      groupId(w, g),
      Array.from({ length: w.members }, (_, m) => userId(w, g, m)),
      w.sentAt - 3_600_000,
    );
    await trackMessages(
      clientsOf(g),
      Array.from({ length: w.messagesPerGroup }, (_, k) => ({
        conversationId: groupId(w, g),
        messageId: messageId(w, g, k),
        senderId: userId(w, g, 0),
        sentAt: w.sentAt,
      })),
    );
  });
}

export async function addMembers(
  context: BenchContext,
  group: string,
  users: readonly string[],
  joinedAt: number,
): Promise<void> {
  for (let i = 0; i < users.length; i += 1_000) {
    await context.membership.addMembers({
      groupId: group,
      userIds: users.slice(i, i + 1_000),
      joinedAt: timestampFromMs(joinedAt),
    });
  }
}

export async function trackMessages(
  context: BenchContext,
  messages: readonly {
    conversationId: string;
    messageId: string;
    senderId: string;
    sentAt: number;
  }[],
): Promise<void> {
  for (let i = 0; i < messages.length; i += 1_000) {
    await context.receipts.trackMessages({
      messages: messages.slice(i, i + 1_000).map((m) => ({
        ...m,
        conversationType: ConversationType.GROUP,
        sentAt: timestampFromMs(m.sentAt),
      })),
    });
  }
}

export function serverStats(context: BenchContext, collectGarbage = false): Promise<StatsResponse> {
  // A server busy with tens of thousands of streams may answer slowly, never forever.
  return context.bench.stats({ collectGarbage }, { timeoutMs: 60_000 });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
