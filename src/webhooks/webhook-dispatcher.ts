import { randomUUID } from "node:crypto";
import type { Logger } from "../logger.js";
import type { ChangeFeed } from "../store/change-feed.js";
import type { EndpointKey, WebhookStateStore } from "../store/webhook-state.js";
import { type DeliveryObserver, EndpointDelivery } from "./endpoint-delivery.js";
import type { WebhookEndpoint, WebhookUrlRules } from "./webhook-endpoint.js";
import { WebhookSender } from "./webhook-sender.js";

export interface WebhookDispatcherOptions {
  readonly feed: ChangeFeed;
  readonly state: WebhookStateStore;
  /** Every tenant's endpoints as configured now (re-read on each tick, so reloads apply). */
  readonly endpoints: () => ReadonlyMap<string, readonly WebhookEndpoint[]>;
  readonly rules: WebhookUrlRules;
  readonly retryPeriodMs: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  /** How long a lease lasts unless renewed: how long a dead instance's endpoints wait. */
  readonly leaseMs: number;
  /** How long a failed delivery is kept for listing and replay before it is pruned. */
  readonly keepFailedMs: number;
  readonly observer: DeliveryObserver;
  readonly logger: Logger;
  readonly pollMs?: number;
}

interface Running {
  readonly delivery: EndpointDelivery;
  readonly done: Promise<void>;
  /** The lease is ours until then unless renewed. */
  leaseUntil: number;
}

/**
 * Runs one EndpointDelivery per enabled endpoint whose lease this instance
 * holds, renewing leases every third of their life. Another instance takes an
 * endpoint over once its lease expires (after a crash) or is released (on
 * stop). Endpoint failures never reach callers: they are logged and counted.
 */
export class WebhookDispatcher {
  readonly #o: WebhookDispatcherOptions;
  readonly #owner = randomUUID();
  readonly #sender: WebhookSender;
  readonly #running = new Map<string, Running>();
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #closed = false;
  #prunedAt = 0;

  constructor(options: WebhookDispatcherOptions) {
    this.#o = options;
    this.#sender = new WebhookSender(options.rules);
  }

  start(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setInterval(() => void this.tick(), Math.max(50, this.#o.leaseMs / 3));
    this.#timer.unref();
    void this.tick();
  }

  /**
   * Takes, renews and releases leases to match the configuration; concurrent calls share one.
   * Resolves once every endpoint this instance took knows its cursor (after a reload, what is
   * acknowledged from then on reaches the endpoints it added).
   */
  tick(): Promise<void> {
    this.#ticking ??= this.#tickOnce()
      .catch((error: unknown) => this.#o.logger.warn({ err: error }, "webhooks: tick failed"))
      .finally(() => {
        this.#ticking = undefined;
      });
    return this.#ticking;
  }

  async #tickOnce(): Promise<void> {
    const wanted = new Map<string, { key: EndpointKey; endpoint: WebhookEndpoint }>();
    for (const [tenant, endpoints] of this.#o.endpoints()) {
      for (const endpoint of endpoints) {
        if (endpoint.enabled)
          wanted.set(id(tenant, endpoint.id), { key: { tenant, endpoint: endpoint.id }, endpoint });
      }
    }
    for (const [name, running] of this.#running) {
      if (!wanted.has(name) || running.delivery.stopped) await this.#stopOne(name, running);
    }
    await Promise.all(
      [...wanted].map(([name, { key, endpoint }]) =>
        this.#keep(name, key, endpoint).catch((error: unknown) =>
          this.#o.logger.warn({ err: error, ...key }, "webhooks: lease or state unreachable"),
        ),
      ),
    );
    // After the leases, and on its own: pruning never holds up or fails a delivery.
    await this.#pruneFailedWhenDue().catch((error: unknown) =>
      this.#o.logger.warn({ err: error }, "webhooks: pruning failed deliveries failed"),
    );
  }

  /**
   * Every instance prunes (it is idempotent), at most once per prune interval, in bounded
   * chunks so a backlog of old failures never holds the tick up for long.
   */
  async #pruneFailedWhenDue(): Promise<void> {
    const now = Date.now();
    if (now - this.#prunedAt < pruneIntervalMs) return;
    this.#prunedAt = now;
    for (const tenant of this.#o.endpoints().keys()) {
      let pruned = 0;
      for (let removed = pruneChunk; removed === pruneChunk && pruned < pruneMaxPerTick; ) {
        removed = await this.#o.state.pruneFailed(tenant, now - this.#o.keepFailedMs, pruneChunk);
        pruned += removed;
      }
      if (pruned > 0)
        this.#o.logger.info({ tenant, pruned }, "webhooks: pruned old failed deliveries");
    }
  }

  async #keep(name: string, key: EndpointKey, endpoint: WebhookEndpoint): Promise<void> {
    if (this.#closed) return;
    const running = this.#running.get(name);
    const now = Date.now();
    if (running !== undefined) {
      let renewed: boolean;
      try {
        renewed = await this.#o.state.acquireLease(key, this.#owner, this.#o.leaseMs);
      } catch (error) {
        // Unreachable state: keep delivering while the lease we hold cannot have expired.
        if (Date.now() >= running.leaseUntil - this.#o.leaseMs / 3) running.delivery.stop();
        throw error;
      }
      if (renewed) running.leaseUntil = now + this.#o.leaseMs;
      else running.delivery.stop(); // another instance holds it now
      return;
    }
    const disabled = (await this.#o.state.disabledUrl(key)) === endpoint.url;
    this.#o.observer.disabled(key, disabled);
    if (disabled) return;
    if (!(await this.#o.state.acquireLease(key, this.#owner, this.#o.leaseMs))) return;
    const delivery = new EndpointDelivery({
      key,
      endpoint: () =>
        this.#o
          .endpoints()
          .get(key.tenant)
          ?.find((e) => e.id === key.endpoint),
      feed: this.#o.feed,
      state: this.#o.state,
      sender: this.#sender,
      owner: this.#owner,
      retryPeriodMs: this.#o.retryPeriodMs,
      backoffBaseMs: this.#o.backoffBaseMs,
      backoffMaxMs: this.#o.backoffMaxMs,
      observer: this.#o.observer,
      logger: this.#o.logger,
      ...(this.#o.pollMs === undefined ? {} : { pollMs: this.#o.pollMs }),
    });
    const done = delivery.run().catch((error: unknown) => {
      this.#o.logger.error({ err: error, ...key }, "webhooks: endpoint delivery stopped");
      delivery.stop();
    });
    this.#running.set(name, { delivery, done, leaseUntil: now + this.#o.leaseMs });
    await delivery.started.catch(() => undefined); // a failure ends run(), logged there
    this.#o.logger.info(key, "webhooks: delivering for this endpoint");
  }

  async #stopOne(name: string, running: Running): Promise<void> {
    running.delivery.stop();
    await running.done;
    this.#running.delete(name);
    const [tenant, endpoint] = name.split("\u0000") as [string, string];
    await this.#o.state.releaseLease({ tenant, endpoint }, this.#owner).catch(() => undefined);
  }

  /** Stops every delivery, releases the leases (another instance takes over at once). */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#ticking;
    await Promise.all([...this.#running].map(([name, running]) => this.#stopOne(name, running)));
    this.#sender.close();
  }
}

const pruneIntervalMs = 10 * 60_000;
const pruneChunk = 500;
const pruneMaxPerTick = 10_000;

const id = (tenant: string, endpoint: string): string => `${tenant}\u0000${endpoint}`;
