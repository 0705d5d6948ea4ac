import type { Workload } from "./workload.js";

/** What a load process is asked to do; it answers with the matching result. */
export type LoadTask =
  | {
      readonly kind: "send";
      readonly address: string;
      readonly workload: Workload;
      /** This process takes calls worker, worker + workers, ... */
      readonly worker: number;
      readonly workers: number;
      readonly concurrency: number;
      readonly connections: number;
      readonly durationMs: number;
      /** With tenants: group g is sent with apiKeys[g % length]; none in development mode. */
      readonly apiKeys?: readonly string[];
    }
  | {
      /** SendReceipts open-loop at a fixed rate, recording when each receipt was acknowledged. */
      readonly kind: "paced-send";
      readonly address: string;
      readonly workload: Workload;
      readonly worker: number;
      readonly workers: number;
      readonly apiKeys: readonly string[];
      /** Receipts per second offered by this process. */
      readonly receiptsPerSecond: number;
      readonly tickMs: number;
      readonly durationMs: number;
    }
  | {
      readonly kind: "streams";
      readonly address: string;
      /** WatchReceipts on the API, or the empty stream of bench.v1.BenchService/Subscribe. */
      readonly method: "watch" | "subscribe";
      readonly streams: number;
      readonly connections: number;
      /** Stream i watches conversationIds[i % length]. */
      readonly conversationIds: readonly string[];
      /** Keep every arrival time (fan-out), or only count them (idle streams). */
      readonly record: boolean;
    }
  | {
      readonly kind: "redis-read";
      readonly url: string;
      readonly keys: readonly string[];
      readonly concurrency: number;
      /** Calls per second in all; 0 for as fast as possible. */
      readonly rate: number;
      readonly durationMs: number;
    }
  | {
      readonly kind: "sqlite-ceiling";
      readonly path: string;
      readonly workload: Workload;
      readonly durationMs: number;
    }
  | {
      readonly kind: "cassandra-ceiling";
      readonly contactPoints: readonly string[];
      readonly localDataCenter: string;
      readonly keyspace: string;
      readonly consistency: string;
      readonly workload: Workload;
      /** Receipts in flight at once. */
      readonly concurrency: number;
      readonly durationMs: number;
    }
  | {
      readonly kind: "webhook-delivery-cost";
      /** One per tenant, at the benchmark's receiver. */
      readonly endpoints: readonly { tenant: string; url: string; secret: string }[];
      /** Prefixes the ids, so the receiver counts these arrivals apart. */
      readonly prefix: string;
      /** The change log the store's deployment delivers from: SQLite, or Redis at this prefix. */
      readonly log:
        | { readonly kind: "sqlite" }
        | { readonly kind: "redis"; readonly url: string; readonly keyPrefix: string };
      readonly events: number;
      /** Rounds of each kind (log only, log and deliver), alternating. */
      readonly rounds: number;
      readonly turnMs: number;
    }
  | {
      readonly kind: "mix";
      readonly address: string;
      readonly workload: Workload;
      readonly worker: number;
      readonly workers: number;
      /** Calls per second of each kind, from this process. */
      readonly rates: { readonly send: number; readonly get: number; readonly list: number };
      readonly durationMs: number;
      readonly windowMs: number;
    };

export interface ThroughputResult {
  readonly calls: number;
  readonly receipts: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly elapsedMs: number;
  readonly latenciesMs: number[];
}

export interface PacedSendResult {
  readonly calls: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly elapsedMs: number;
  readonly latenciesMs: number[];
  /** Per receipt acknowledged (`<message id>/<reader id>`): when its answer came, wall clock ms. */
  readonly acknowledgedAt: Record<string, number>;
}

export interface StreamsResult {
  readonly opened: number;
  readonly failed: number;
  readonly firstError?: string;
  readonly openMs: number;
  /** Per event key (message id or broadcast sequence): every arrival time, wall clock ms. */
  readonly arrivals: Record<string, number[]>;
  readonly received: number;
}

export interface MixWindow {
  readonly startMs: number;
  readonly latenciesMs: Record<"send" | "get" | "list", number[]>;
  readonly errors: number;
}

export interface MixResult {
  readonly windows: MixWindow[];
  readonly firstError?: string;
}
