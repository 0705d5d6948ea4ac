import type { BenchContext } from "../bench-context.js";
import { type LatencySummary, nowMs, ratio, round, summarize } from "../latency-stats.js";
import type { PacedSendResult, ThroughputResult } from "../load-tasks.js";
import { findStorePids, perUnit, startCpuMeter } from "../process-cpu.js";
import { runLoad, serverCpu } from "../processes.js";
import type { DeliveryCostResult } from "../webhook-delivery-cost.js";
import { BenchWebhookReceiver } from "../webhook-receiver.js";
import {
  newTenants,
  quietMs,
  seedAndWarm,
  startWithTenants,
  tally,
  tenantCount,
} from "../webhook-tenants.js";
import type { Workload } from "../workload.js";

export interface WebhooksResult {
  readonly tenants: number;
  readonly lag: {
    readonly workload: Workload;
    readonly offeredReceiptsPerSecond: number;
    readonly acknowledgedPerSecond: number;
    readonly durationMs: number;
    readonly acknowledged: number;
    /** Acknowledged receipts whose event arrived, once or more. */
    readonly delivered: number;
    /** Arrivals beyond the first of an acknowledged receipt. */
    readonly duplicates: number;
    readonly missing: number;
    /** Events of receipts whose call failed at the client (it may still have been stored). */
    readonly unacknowledgedArrivals: number;
    readonly callErrors: number;
    readonly firstError?: string;
    readonly refusedPosts: number;
    readonly posts: number;
    readonly callLatency: LatencySummary;
    /** From each receipt's acknowledgement (its SendReceipts answer) to its event's arrival. */
    readonly fromAcknowledgement: LatencySummary;
    /**
     * The offered rate was above what the service acknowledged closed-loop in the same run
     * (without webhooks), or its calls queued (p99 over 1 s): then the lag from the answer
     * says little, since a queued call is answered after its receipt was already delivered.
     */
    readonly saturated: boolean;
  };
  readonly throughput: {
    readonly workload: Workload;
    readonly callsInFlight: number;
    /**
     * Receipts/s of each round, in the order run, and CPU µs per acknowledged receipt by
     * process (with webhooks: until delivery caught up, so each receipt's delivery is in).
     */
    readonly rounds: readonly Round[];
    readonly withoutWebhooks: number;
    readonly withWebhooks: number;
    readonly errors: number;
    /** With webhooks: what the receiver had once delivery caught up (or stalled). */
    readonly delivery: {
      readonly acknowledged: number;
      readonly delivered: number;
      readonly duplicates: number;
      readonly caughtUpAfterMs: number;
      /** POSTs that arrived, so events per POST: what a POST's fixed cost is spread over. */
      readonly posts: number;
    };
    readonly ratio: number;
    /** Service CPU µs per receipt, mean of the rounds without webhooks. */
    readonly serviceCpuWithout: number;
    /** Service CPU per receipt without webhooks over with: what throughput would follow alone. */
    readonly cpuRatio: number;
  };
  /**
   * Delivering one event, measured apart (bench/webhook-delivery-cost.ts), and what it would
   * make of the throughput ratio were the service CPU-bound: service CPU per receipt without
   * webhooks over that plus the delivery's.
   */
  readonly deliveryCost: DeliveryCostResult & { readonly cpuBoundRatio: number };
  readonly floors: {
    readonly lag: { readonly target: string; readonly met: boolean };
    readonly throughput: { readonly target: string; readonly met: boolean };
  };
}

interface Round {
  readonly webhooks: boolean;
  readonly receiptsPerSecond: number;
  readonly cpuPerReceipt: Readonly<Record<string, number>>;
}

const loadProcesses = 2;

/**
 * Webhook delivery (issue #15): tenants with one endpoint each, at a real node:http receiver
 * in this process. (1) SendReceipts open-loop at 1,000 receipts/s: the lag from each
 * receipt's acknowledgement to its event's arrival, and whether each arrived exactly once.
 * (2) SendReceipts closed-loop as fast as it goes, on a service whose tenants have no
 * endpoint and one whose tenants have one, back to back: the ratio.
 */
export async function webhooksScenario(context: BenchContext): Promise<WebhooksResult> {
  const quick = context.mode === "quick";
  // The services of this scenario are its own (they need a tenants file): the default one
  // would only take a share of the server's CPU.
  await context.service.stop();
  const receiver = await new BenchWebhookReceiver().listen();
  try {
    // Throughput first: the lag is measured right after, and read against that capacity.
    const throughput = await measureThroughput(context, receiver, quick);
    const lag = await measureLag(context, receiver, quick, throughput.withoutWebhooks);
    const deliveryCost = await measureDeliveryCost(context, receiver, quick, throughput);
    const lagMet =
      lag.fromAcknowledgement.p99Ms <= 1_000 &&
      lag.missing === 0 &&
      lag.duplicates === 0 &&
      lag.callErrors === 0;
    return {
      tenants: tenantCount,
      lag,
      throughput,
      deliveryCost,
      floors: {
        lag: {
          target: "p99 ≤ 1 s from the acknowledgement at 1,000 receipts/s; each exactly once",
          met: lagMet,
        },
        throughput: { target: "≥ 0.9 × without webhooks", met: throughput.ratio >= 0.9 },
      },
    };
  } finally {
    await receiver.close();
  }
}

async function measureLag(
  context: BenchContext,
  receiver: BenchWebhookReceiver,
  quick: boolean,
  capacity: number,
): Promise<WebhooksResult["lag"]> {
  const durationMs = quick ? 10_000 : 30_000;
  const offered = 1_000;
  // 5 ids per call: 200 calls/s, two per 20-ms tick in each load process.
  const workload: Workload = {
    prefix: `${context.runId}wl-`,
    groups: 10 * tenantCount,
    members: 11,
    messagesPerGroup: quick ? 50 : 100,
    idsPerCall: 5,
    sentAt: Date.now() - 60_000,
  };
  const tenants = newTenants(`${context.runId}wl`);
  const service = await startWithTenants(context, tenants, receiver, true, "lag");
  try {
    await seedAndWarm(context, service, tenants, workload, receiver, true);
    context.log(`webhooks: SendReceipts at ${offered} receipts/s for ${durationMs / 1000} s`);
    const results = await Promise.all(
      Array.from({ length: loadProcesses }, (_, worker) =>
        runLoad<PacedSendResult>({
          kind: "paced-send",
          address: service.address,
          workload,
          worker,
          workers: loadProcesses,
          apiKeys: tenants.map((t) => t.apiKey),
          receiptsPerSecond: offered / loadProcesses,
          tickMs: 20,
          durationMs,
        }),
      ),
    );
    const acknowledgedAt = new Map<string, number>();
    for (const r of results)
      for (const [key, at] of Object.entries(r.acknowledgedAt)) acknowledgedAt.set(key, at);
    await receiver.until(
      () => [...acknowledgedAt.keys()].every((key) => receiver.arrivals.has(key)),
      quietMs,
    );
    const lags: number[] = [];
    let duplicates = 0;
    for (const [key, at] of acknowledgedAt) {
      const times = receiver.arrivals.get(key);
      if (times === undefined) continue;
      lags.push((times[0] as number) - at);
      duplicates += times.length - 1;
    }
    let arrivedOfRun = 0;
    for (const key of receiver.arrivals.keys()) if (key.startsWith(workload.prefix)) arrivedOfRun++;
    const callErrors = results.reduce((sum, r) => sum + r.errors, 0);
    const firstError = results.find((r) => r.firstError)?.firstError;
    const elapsedMs = Math.max(...results.map((r) => r.elapsedMs));
    const callLatency = summarize(results.flatMap((r) => r.latenciesMs));
    return {
      workload,
      offeredReceiptsPerSecond: offered,
      acknowledgedPerSecond: round((acknowledgedAt.size * 1000) / elapsedMs, 1),
      durationMs,
      acknowledged: acknowledgedAt.size,
      delivered: lags.length,
      duplicates,
      missing: acknowledgedAt.size - lags.length,
      unacknowledgedArrivals: arrivedOfRun - lags.length,
      callErrors,
      ...(firstError ? { firstError } : {}),
      refusedPosts: receiver.refused,
      posts: receiver.posts,
      callLatency,
      fromAcknowledgement: summarize(lags),
      saturated: capacity < offered || callLatency.p99Ms > 1_000,
    };
  } finally {
    await service.stop();
  }
}

async function measureDeliveryCost(
  context: BenchContext,
  receiver: BenchWebhookReceiver,
  quick: boolean,
  throughput: WebhooksResult["throughput"],
): Promise<WebhooksResult["deliveryCost"]> {
  context.log("webhooks: the service's CPU per delivered event, measured apart");
  const tenants = newTenants(`${context.runId}wc`);
  const cost = await runLoad<DeliveryCostResult>(
    {
      kind: "webhook-delivery-cost",
      endpoints: tenants.map((t) => ({
        tenant: t.id,
        url: receiver.endpointFor(t.id, t.secret),
        secret: t.secret,
      })),
      prefix: `${context.runId}wc-`,
      log:
        context.backend === "cassandra"
          ? { kind: "redis", url: context.redisUrl, keyPrefix: context.redisPrefix }
          : { kind: "sqlite" },
      events: quick ? 16_000 : 32_000,
      rounds: quick ? 3 : 5,
      turnMs: 100,
    },
    serverCpu,
  );
  const { serviceCpuWithout } = throughput;
  return {
    ...cost,
    cpuBoundRatio: ratio(serviceCpuWithout, serviceCpuWithout + cost.deliveryUsPerEvent),
  };
}

async function measureThroughput(
  context: BenchContext,
  receiver: BenchWebhookReceiver,
  quick: boolean,
): Promise<WebhooksResult["throughput"]> {
  const durationMs = quick ? 10_000 : 30_000;
  const concurrency = 16;
  // The SendReceipts scenario's shape (10 ids per call, every pair new), its groups spread
  // over the tenants.
  const shape = {
    groups: quick ? 52 : 100,
    members: quick ? 21 : 51,
    messagesPerGroup: quick ? 100 : 200,
    idsPerCall: 10,
    sentAt: Date.now() - 60_000,
  };
  // Alternating (ABBA in full mode) so that a machine slowing down during the run weighs
  // on both sides alike.
  const order = quick ? [false, true] : [false, true, true, false];
  const rounds: Round[] = [];
  // Cassandra and Redis are on the path of the Cassandra store only; SQLite lives in the service.
  const stores = context.backend === "cassandra" ? findStorePids() : {};
  let errors = 0;
  let delivery: WebhooksResult["throughput"]["delivery"] = {
    acknowledged: 0,
    delivered: 0,
    duplicates: 0,
    caughtUpAfterMs: 0,
    posts: 0,
  };
  for (const [round_, webhooks] of order.entries()) {
    const name = `${context.runId}w${webhooks ? "h" : "n"}${round_}`;
    const workload: Workload = { prefix: `${name}-`, ...shape };
    const tenants = newTenants(name);
    const service = await startWithTenants(context, tenants, receiver, webhooks, name);
    try {
      await seedAndWarm(context, service, tenants, workload, receiver, webhooks);
      context.log(`webhooks: SendReceipts closed-loop, ${webhooks ? "with" : "without"} webhooks`);
      const postsBefore = receiver.posts;
      const cpu = startCpuMeter({ service: service.pid, ...stores });
      const results = await Promise.all(
        Array.from({ length: loadProcesses }, (_, worker) =>
          runLoad<ThroughputResult>({
            kind: "send",
            address: service.address,
            workload,
            worker,
            workers: loadProcesses,
            concurrency,
            connections: 2,
            durationMs,
            apiKeys: tenants.map((t) => t.apiKey),
          }),
        ),
      );
      const acknowledged = results.reduce((sum, r) => sum + r.receipts, 0);
      const elapsed = Math.max(...results.map((r) => r.elapsedMs));
      errors += results.reduce((sum, r) => sum + r.errors, 0);
      const receiptsPerSecond = round((acknowledged * 1000) / elapsed, 1);
      if (webhooks) {
        const ended = nowMs();
        // The last calls' receipts may be stored but unanswered (acknowledged counts only
        // answers): arrivals at least as many as acknowledged is caught up.
        await receiver.until(
          () => tally(receiver, workload.prefix).delivered >= acknowledged,
          quietMs,
        );
        const { delivered, duplicates } = tally(receiver, workload.prefix);
        delivery = {
          acknowledged: delivery.acknowledged + acknowledged,
          delivered: delivery.delivered + delivered,
          duplicates: delivery.duplicates + duplicates,
          caughtUpAfterMs: Math.max(delivery.caughtUpAfterMs, round(nowMs() - ended, 0)),
          posts: delivery.posts + receiver.posts - postsBefore,
        };
      }
      rounds.push({ webhooks, receiptsPerSecond, cpuPerReceipt: perUnit(cpu(), acknowledged) });
    } finally {
      await service.stop();
    }
  }
  const mean = (webhooks: boolean, figure: (r: Round) => number) => {
    const figures = rounds.filter((r) => r.webhooks === webhooks).map(figure);
    return round(figures.reduce((sum, x) => sum + x, 0) / figures.length, 1);
  };
  const withoutWebhooks = mean(false, (r) => r.receiptsPerSecond);
  const withWebhooks = mean(true, (r) => r.receiptsPerSecond);
  const serviceCpu = (r: Round) => r.cpuPerReceipt.service ?? Number.NaN;
  const serviceCpuWithout = mean(false, serviceCpu);
  return {
    workload: { prefix: `${context.runId}w*-`, ...shape },
    callsInFlight: loadProcesses * concurrency,
    rounds,
    withoutWebhooks,
    withWebhooks,
    errors,
    delivery,
    ratio: ratio(withWebhooks, withoutWebhooks),
    serviceCpuWithout,
    cpuRatio: ratio(serviceCpuWithout, mean(true, serviceCpu)),
  };
}
