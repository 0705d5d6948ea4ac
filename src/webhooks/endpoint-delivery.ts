import { type WebhookEvent, webhookEventOf } from "../api/webhook-payload.js";
import { ChangeLogExpiredError } from "../domain/errors.js";
import { isPrivate } from "../domain/model.js";
import type { Logger } from "../logger.js";
import type { ChangeFeed } from "../store/change-feed.js";
import type { EndpointKey, FailedDelivery, WebhookStateStore } from "../store/webhook-state.js";
import { companyWait, defaultLingerMs } from "./company-wait.js";
import { type Batch, batchOf, replayOf } from "./delivery-batch.js";
import { DeliveryWindow } from "./delivery-window.js";
import { Doorbell } from "./doorbell.js";
import { retryDelayMs } from "./retry-delay.js";
import type { WebhookEndpoint } from "./webhook-endpoint.js";
import type { SendOutcome, WebhookSender } from "./webhook-sender.js";
import { signatureHeaders } from "./webhook-signature.js";

/** What an endpoint's delivery reports, for metrics. */
export interface DeliveryObserver {
  delivered(key: EndpointKey, events: readonly WebhookEvent[], now: number): void;
  retried(key: EndpointKey): void;
  failed(key: EndpointKey, events: number): void;
  disabled(key: EndpointKey, disabled: boolean): void;
  failing(key: EndpointKey, failing: boolean): void;
  lag(key: EndpointKey, seconds: number): void;
}

export interface EndpointDeliveryOptions {
  readonly key: EndpointKey;
  /** The endpoint as configured now: a reload changes secrets and limits between attempts. */
  readonly endpoint: () => WebhookEndpoint | undefined;
  readonly feed: ChangeFeed;
  readonly state: WebhookStateStore;
  readonly sender: WebhookSender;
  /** This instance's lease owner id: cursor writes are refused once another owner holds it. */
  readonly owner: string;
  readonly retryPeriodMs: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly observer: DeliveryObserver;
  readonly logger: Logger;
  readonly clock?: () => number;
  /** Events read ahead and not yet delivered, at most. */
  readonly windowSize?: number;
  /** Checks for new changes and replays at least this often, whatever wakes it. */
  readonly pollMs?: number;
  /** How long a batch that is not full waits for company at most (company-wait.ts). */
  readonly lingerMs?: number;
}

/**
 * Delivers one tenant endpoint's events from the tenant's change log, while
 * this instance holds the endpoint's lease. It reads ahead of its cursor,
 * posts batches with at most `concurrency` requests in flight and never two
 * batches of one conversation at once (so each conversation's events arrive
 * in log order), retries each batch with backoff until the retry period
 * ends, then keeps it as failed. The cursor moves to the last position before
 * the oldest change not yet done, so a restart redelivers only what was in
 * flight or ahead (the same webhook-ids for the same batches).
 */
export class EndpointDelivery {
  readonly #o: EndpointDeliveryOptions;
  readonly #clock: () => number;
  readonly #windowSize: number;
  readonly #pollMs: number;
  readonly #lingerMs: number;
  readonly #stop = new AbortController();
  readonly #window = new DeliveryWindow();
  readonly #waiting: Batch[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  readonly #replaysInFlight = new Set<string>();
  #lastRead = "";
  #cursor = "";
  #savedCursor = "";
  #lastSaveAt = 0;
  #lastReplayCheck = 0;
  readonly #doorbell = new Doorbell();
  readonly #poke = this.#doorbell.ring;
  /**
   * Whether the log may hold changes not read yet: set by the feed (a publish, an
   * interruption), by a full read and on start; the loop also wakes for its own reasons (a
   * POST done, a linger over), which need no read. The poll reads anyway.
   */
  #unread = true;
  #lastReadAt = 0;
  readonly #logChanged = (): void => {
    this.#unread = true;
    this.#poke();
  };
  #failing = false;
  /**
   * When events that wait for company (lingerMs) may go without it, if some wait: the loop
   * wakes then to send them.
   */
  #holdingUntil: number | undefined;
  /** When the last POST started (first attempts and retries alike). */
  #lastPostAt = Number.NEGATIVE_INFINITY;

  /**
   * Resolves once the cursor is known: every change logged after that is delivered. A new
   * endpoint starts at the log's head: it hears what happens from now on, not the log's
   * whole retention.
   */
  readonly started: Promise<void>;

  constructor(options: EndpointDeliveryOptions) {
    this.#o = options;
    this.#clock = options.clock ?? Date.now;
    this.#windowSize = options.windowSize ?? 10_000;
    this.#pollMs = options.pollMs ?? 1_000;
    this.#lingerMs = options.lingerMs ?? defaultLingerMs;
    this.started = this.#start();
  }

  async #start(): Promise<void> {
    const { feed, key, state } = this.#o;
    let cursor = await state.cursor(key);
    if (cursor === undefined) {
      cursor = await feed.head(key.tenant);
      await this.#save(cursor);
    }
    this.#cursor = this.#savedCursor = this.#lastRead = cursor;
  }

  get stopped(): boolean {
    return this.#stop.signal.aborted;
  }

  /** Delivers until stop(), a lost lease or a 410; resolves once everything in flight ended. */
  async run(): Promise<void> {
    const { feed, key } = this.#o;
    await this.started;
    const unlisten = feed.ring(key.tenant, this.#logChanged, this.#logChanged);
    try {
      while (!this.stopped) {
        await this.#readAhead();
        await this.#startReplays();
        this.#dispatch();
        await this.#advanceCursor(false);
        this.#o.observer.lag(key, this.#lagSeconds());
        await this.#doorbell.sleep(this.#nextWakeIn(), this.#stop.signal);
      }
    } finally {
      unlisten();
      await this.#settle();
      await this.#advanceCursor(true).catch(() => undefined);
    }
  }

  /**
   * Stops reading and posting; requests in flight are cut off (their events stay after the
   * cursor, so whoever delivers next sends them again with the same ids).
   */
  stop(): void {
    this.#stop.abort();
    this.#poke();
  }

  #nextWakeIn(): number {
    const now = this.#clock();
    let next = this.#pollMs;
    for (const batch of this.#waiting) next = Math.min(next, Math.max(0, batch.notBefore - now));
    if (this.#holdingUntil !== undefined) {
      next = Math.min(next, Math.max(0, this.#holdingUntil - now));
    }
    return next;
  }

  async #readAhead(): Promise<void> {
    const { feed, key, logger } = this.#o;
    const endpoint = this.#o.endpoint();
    if (endpoint === undefined) return;
    const room = this.#window.room(this.#windowSize);
    if (room <= 0) return;
    const now = this.#clock();
    if (!this.#unread && now - this.#lastReadAt < this.#pollMs) return;
    // Cleared before the read: a publish during it sets it again, for one more read.
    this.#unread = false;
    this.#lastReadAt = now;
    const limit = Math.min(room, 1_000);
    let changes: Awaited<ReturnType<ChangeFeed["readAfter"]>>;
    try {
      changes = await feed.readAfter(key.tenant, this.#lastRead, limit);
    } catch (error) {
      this.#unread = true;
      if (!(error instanceof ChangeLogExpiredError)) {
        logger.warn({ err: error, ...key }, "webhooks: change log unreadable; retrying");
        return;
      }
      // The log no longer holds what follows the cursor (delivery stopped for longer than the
      // retention): continue from its head and say so; those changes cannot be delivered.
      const head = await feed.head(key.tenant);
      logger.error(
        { ...key, cursor: this.#lastRead, head },
        "webhooks: changes after the cursor expired from the change log before delivery",
      );
      this.#lastRead = head;
      if (this.#window.empty) this.#cursor = head;
      return;
    }
    const readAt = this.#clock();
    for (const positioned of changes) {
      const event = webhookEventOf(key.tenant, positioned);
      const { change } = positioned;
      // A private read is for its reader's own devices only: never sent to the tenant's endpoints.
      const wanted = !isPrivate(change) && endpoint.events.includes(event.type as never);
      this.#window.add(
        positioned.position,
        change.kind === "receipt" ? Math.min(change.readAt, readAt) : readAt,
        wanted ? event : undefined,
      );
      this.#lastRead = positioned.position;
    }
    // A full read may have left more behind it.
    if (changes.length === limit) this.#logChanged();
  }

  async #startReplays(): Promise<void> {
    const now = this.#clock();
    if (now - this.#lastReplayCheck < this.#pollMs) return;
    this.#lastReplayCheck = now;
    const replaying = new Set(
      this.#waiting.flatMap((b) => (b.replayOf === undefined ? [] : [b.id])),
    );
    let replays: FailedDelivery[];
    try {
      replays = await this.#o.state.replays(this.#o.key, 100);
    } catch {
      return;
    }
    for (const failed of replays) {
      if (replaying.has(failed.webhookId) || this.#replaysInFlight.has(failed.webhookId)) continue;
      this.#waiting.push(replayOf(failed, now));
    }
  }

  #dispatch(): void {
    const endpoint = this.#o.endpoint();
    if (endpoint === undefined || this.stopped) return;
    const now = this.#clock();
    this.#waiting.sort((a, b) => a.notBefore - b.notBefore);
    // While its last attempt failed, an endpoint gets one request at a time: a receiver that is
    // down is probed, not hammered by every waiting batch; the first success restores the rest.
    const limit = this.#failing ? 1 : endpoint.concurrency;
    this.#holdingUntil = undefined;
    while (this.#inFlight.size < limit) {
      const due = this.#waiting[0];
      if (due !== undefined && due.notBefore <= now) {
        this.#waiting.shift();
        this.#post(due, endpoint);
        continue;
      }
      const wait = companyWait(now, {
        posting: this.#inFlight.size > 0,
        lastPostAt: this.#lastPostAt,
        lingerMs: this.#lingerMs,
      });
      const batch = this.#nextBatch(endpoint, now, wait?.unlessSince);
      if (batch === undefined) {
        const oldest = this.#window.oldestAvailableAt();
        if (oldest !== undefined && wait !== undefined) this.#holdingUntil = wait.until(oldest);
        return;
      }
      this.#post(batch, endpoint);
    }
  }

  /** The oldest queued events of conversations not busy, up to the batch size. */
  #nextBatch(endpoint: WebhookEndpoint, now: number, unlessSince?: number): Batch | undefined {
    const taken = this.#window.take(endpoint.batchSize, unlessSince);
    return taken === undefined ? undefined : batchOf(this.#o.key, taken, now);
  }

  #post(batch: Batch, endpoint: WebhookEndpoint): void {
    batch.attempts += 1;
    this.#lastPostAt = this.#clock();
    if (batch.replayOf !== undefined) this.#replaysInFlight.add(batch.id);
    const timestamp = Math.floor(this.#lastPostAt / 1000);
    const headers = signatureHeaders(batch.id, timestamp, batch.body, endpoint.secrets);
    const work = this.#o.sender
      .send(endpoint.url, headers, batch.body, {
        timeoutMs: endpoint.timeoutMs,
        concurrency: endpoint.concurrency,
        signal: this.#stop.signal,
        pool: `${this.#o.key.tenant}/${this.#o.key.endpoint}`,
      })
      .then((outcome) => this.#settleBatch(batch, endpoint, outcome))
      .catch((error: unknown) => {
        this.#o.logger.error({ err: error, ...this.#o.key }, "webhooks: delivery step failed");
        this.#retryLater(batch, undefined);
      })
      .finally(() => {
        this.#inFlight.delete(work);
        this.#replaysInFlight.delete(batch.id);
        this.#poke();
      });
    this.#inFlight.add(work);
  }

  async #settleBatch(batch: Batch, endpoint: WebhookEndpoint, outcome: SendOutcome): Promise<void> {
    const { key, observer, logger, state } = this.#o;
    const now = this.#clock();
    if (outcome.kind === "delivered") {
      if (batch.replayOf !== undefined) await state.removeFailed(key, batch.id);
      this.#window.finish(batch);
      observer.delivered(key, batch.events, now);
      this.#setFailing(false);
      return;
    }
    if (outcome.kind === "gone") {
      logger.warn(
        { ...key, webhookId: batch.id, status: outcome.status },
        "webhooks: endpoint answered 410 Gone; disabled until its URL changes or `receipts webhooks enable`",
      );
      await state.setDisabled(key, endpoint.url);
      observer.disabled(key, true);
      this.#retryLater(batch, undefined);
      this.stop();
      return;
    }
    if (this.stopped) {
      this.#retryLater(batch, undefined);
      return;
    }
    batch.lastError = outcome.reason;
    this.#setFailing(true);
    const givingUp = now - batch.firstAttemptAt >= this.#o.retryPeriodMs;
    logger.warn(
      {
        ...key,
        webhookId: batch.id,
        attempt: batch.attempts,
        reason: outcome.reason,
        events: batch.events.length,
        givingUp,
      },
      "webhooks: delivery attempt failed",
    );
    if (!givingUp) {
      observer.retried(key);
      this.#retryLater(batch, outcome.retryAfterMs);
      return;
    }
    await state.addFailed({
      webhookId: batch.id,
      tenant: key.tenant,
      endpoint: key.endpoint,
      body: batch.body,
      eventCount: batch.replayOf?.eventCount ?? batch.events.length,
      firstAttemptAt: batch.replayOf?.firstAttemptAt ?? batch.firstAttemptAt,
      failedAt: now,
      attempts: (batch.replayOf?.attempts ?? 0) + batch.attempts,
      lastError: outcome.reason,
      replayRequested: false,
    });
    observer.failed(key, batch.replayOf?.eventCount ?? batch.events.length);
    this.#window.finish(batch);
  }

  #retryLater(batch: Batch, retryAfterMs: number | undefined): void {
    const now = this.#clock();
    const backoff = retryDelayMs(batch.attempts, this.#o.backoffBaseMs, this.#o.backoffMaxMs);
    // Retry-After is honoured even beyond the backoff cap, but never past the retry period.
    const wait = Math.max(backoff, Math.min(retryAfterMs ?? 0, this.#o.retryPeriodMs));
    batch.notBefore = now + wait;
    this.#waiting.push(batch);
  }

  #setFailing(failing: boolean): void {
    if (failing === this.#failing) return;
    this.#failing = failing;
    this.#o.observer.failing(this.#o.key, failing);
  }

  async #advanceCursor(force: boolean): Promise<void> {
    this.#cursor = this.#window.advance() ?? this.#cursor;
    const now = this.#clock();
    if (this.#cursor === this.#savedCursor || (!force && now - this.#lastSaveAt < 200)) return;
    await this.#save(this.#cursor);
  }

  async #save(position: string): Promise<void> {
    const saved = await this.#o.state.saveCursor(this.#o.key, this.#o.owner, position);
    this.#lastSaveAt = this.#clock();
    if (!saved) {
      this.#o.logger.warn(this.#o.key, "webhooks: lease lost; another instance delivers");
      this.stop();
      return;
    }
    this.#savedCursor = position;
  }

  #lagSeconds(): number {
    const oldest = this.#window.oldestAt();
    return oldest === undefined ? 0 : Math.max(0, (this.#clock() - oldest) / 1000);
  }

  /** Waits for requests in flight (stop() aborted them), then forgets what is left. */
  async #settle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }
}
