import { tracingChannel } from "node:diagnostics_channel";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** Latency buckets in seconds: 0.5 ms (embedded store) to 10 s (a slow call near its deadline). */
const latencyBuckets = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
];

/** A gauge per webhook endpoint (tenant, endpoint). */
const endpointGauge = (registry: Registry, name: string, help: string) =>
  new Gauge({ name, help, labelNames: ["tenant", "endpoint"] as const, registers: [registry] });

/**
 * Every metric of one app, in a registry of its own (not prom-client's
 * global one), so that several servers in one process never share series.
 * Parts built elsewhere (Redis cache, rate limits) receive this object and
 * increment the counters meant for them.
 */
export class Metrics {
  readonly registry = new Registry();

  /** RPCs started, by service, method and type (unary, server_stream, ...). */
  readonly rpcStarted = new Counter({
    name: "grpc_server_started_total",
    help: "RPCs started on the server.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type"] as const,
    registers: [this.registry],
  });

  /** RPCs finished, by service, method, type and status code (OK, NotFound, ...). */
  readonly rpcHandled = new Counter({
    name: "grpc_server_handled_total",
    help: "RPCs completed on the server, by status code.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type", "grpc_code"] as const,
    registers: [this.registry],
  });

  /** Time from the call's start to its last message (for streams, the stream's life). */
  readonly rpcSeconds = new Histogram({
    name: "grpc_server_handling_seconds",
    help: "Time to handle an RPC, from start to status.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type"] as const,
    buckets: latencyBuckets,
    registers: [this.registry],
  });

  /** Server streams open now. */
  readonly openStreams = new Gauge({
    name: "receipts_open_streams",
    help: "Server streams open now, by service and method.",
    labelNames: ["grpc_service", "grpc_method"] as const,
    registers: [this.registry],
  });

  /** Messages sent on WatchReceipts streams: the fan-out of receipt changes. */
  readonly watchMessagesSent = new Counter({
    name: "receipts_watch_messages_sent_total",
    help: "Messages sent to WatchReceipts streams, by kind (receipt, readHorizon, heartbeat).",
    labelNames: ["update"] as const,
    registers: [this.registry],
  });

  /** Latency of each call to the store port (and the change feed, as feed.*). */
  readonly storeSeconds = new Histogram({
    name: "receipts_store_operation_seconds",
    help: "Latency of store and change-feed operations, by operation and outcome (ok, error).",
    labelNames: ["operation", "outcome"] as const,
    buckets: latencyBuckets,
    registers: [this.registry],
  });

  /** Latency of Redis commands sent by any ioredis client of the process. */
  readonly redisSeconds = new Histogram({
    name: "receipts_redis_command_seconds",
    help: "Latency of Redis commands (ioredis), by command and outcome (ok, error).",
    labelNames: ["command", "outcome"] as const,
    buckets: latencyBuckets,
    registers: [this.registry],
  });

  /**
   * Cache lookups, for whoever builds a cache: `inc({ cache: "receipts", result: "hit" })`
   * or `result: "miss"`. Hit ratio: rate of hits over rate of all lookups.
   */
  readonly cacheLookups = new Counter({
    name: "receipts_cache_lookups_total",
    help: "Cache lookups, by cache and result (hit, miss).",
    labelNames: ["cache", "result"] as const,
    registers: [this.registry],
  });

  /** Warnings Cassandra sent with its answers (tombstones, batch sizes), by table and kind. */
  readonly cassandraWarnings = new Counter({
    name: "receipts_cassandra_warnings_total",
    help: "Warnings Cassandra sent with answers (a read past tombstone_warn_threshold, a batch over batch_size_warn_threshold), by table and kind.",
    labelNames: ["table", "kind"] as const,
    registers: [this.registry],
  });

  /** Calls refused by a rate limit, for whoever enforces one: `inc({ limit: "tenant" })`. */
  readonly rateLimitRejections = new Counter({
    name: "receipts_rate_limit_rejections_total",
    help: "Calls and connections refused by a limit (request_rate, calls_in_flight, connections_per_address, streams_per_address, request_body_time), by limit.",
    labelNames: ["limit"] as const,
    registers: [this.registry],
  });

  /** Webhook events, by tenant, endpoint and result (delivered, failed after the retry period). */
  readonly webhookEvents = new Counter({
    name: "receipts_webhook_events_total",
    help: "Webhook events delivered or given up as failed, by tenant, endpoint and result.",
    labelNames: ["tenant", "endpoint", "result"] as const,
    registers: [this.registry],
  });

  /** Webhook POSTs that failed and will be retried. */
  readonly webhookRetries = new Counter({
    name: "receipts_webhook_retries_total",
    help: "Webhook delivery attempts that failed and are retried, by tenant and endpoint.",
    labelNames: ["tenant", "endpoint"] as const,
    registers: [this.registry],
  });

  /** Age of the oldest change the endpoint has not had yet: how far its deliveries lag. */
  readonly webhookLagSeconds = endpointGauge(
    this.registry,
    "receipts_webhook_lag_seconds",
    "Age of the oldest change of the log not yet delivered to the endpoint.",
  );

  /** 1 while the endpoint's last attempt failed, 0 once one succeeds. */
  readonly webhookFailing = endpointGauge(
    this.registry,
    "receipts_webhook_endpoint_failing",
    "1 while the endpoint's latest delivery attempt failed.",
  );

  /** 1 when a 410 Gone disabled the endpoint. */
  readonly webhookDisabled = endpointGauge(
    this.registry,
    "receipts_webhook_endpoint_disabled",
    "1 when the endpoint answered 410 Gone and is no longer called.",
  );

  /** From a receipt's read_at to its delivery. */
  readonly webhookDeliverySeconds = new Histogram({
    name: "receipts_webhook_delivery_seconds",
    help: "Time from a receipt's acknowledgement to its webhook's delivery.",
    buckets: latencyBuckets,
    registers: [this.registry],
  });

  /** The text exposition format Prometheus scrapes. */
  get contentType(): string {
    return this.registry.contentType;
  }

  scrape(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * Adds the Node.js process metrics (CPU, memory, event loop lag, GC) to the
 * registry. Once per process: the composition root calls it, tests do not.
 */
export function collectProcessMetrics(metrics: Metrics): void {
  collectDefaultMetrics({ register: metrics.registry });
}

interface RedisCommandContext {
  readonly command?: string;
  readonly error?: unknown;
}

/**
 * Times every command of every ioredis client through the tracing channel
 * ioredis publishes (`ioredis:command`), so the Redis code needs no change.
 * Returns the unsubscribe.
 */
export function measureRedisCommands(metrics: Metrics): () => void {
  const channel = tracingChannel<string, RedisCommandContext>("ioredis:command");
  const started = new WeakMap<object, () => void>();
  const ignore = () => {};
  const handlers = {
    end: ignore,
    asyncStart: ignore,
    error: ignore,
    start(context: RedisCommandContext) {
      const end = metrics.redisSeconds.startTimer();
      started.set(context, () =>
        end({
          command: (context.command ?? "unknown").toLowerCase(),
          outcome: context.error === undefined ? "ok" : "error",
        }),
      );
    },
    asyncEnd(context: RedisCommandContext) {
      started.get(context)?.();
      started.delete(context);
    },
  };
  channel.subscribe(handlers);
  return () => channel.unsubscribe(handlers);
}
