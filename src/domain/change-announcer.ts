import type { ChangeFeed } from "../store/change-feed.js";
import { pendingChangeIdentity as identity } from "../store/pending-change-key.js";
import type { OutboxStore } from "../store/receipt-store.js";
import { type PendingChange, pendingChangeTime, type ReceiptChange } from "./model.js";

/** What describing a pending change found: the change to announce, or why there is none yet. */
export type PendingOutcome =
  | { readonly kind: "announce"; readonly change: ReceiptChange }
  /** Its fact is not stored (yet): the call that wrote it may still be running. */
  | { readonly kind: "not-stored" }
  /** Nothing to announce any more (its message was deleted, its receipt withdrawn). */
  | { readonly kind: "gone" };

export interface ChangeAnnouncerOptions {
  readonly store: OutboxStore;
  readonly feed: ChangeFeed;
  /** Describes pending changes again, as they stand now, in order. */
  readonly describe: (
    tenant: string,
    pending: readonly PendingChange[],
  ) => Promise<readonly PendingOutcome[]>;
  readonly clock?: () => number;
  /** Age of a pending change before the sweep takes it over from the call that wrote it. */
  readonly graceMs?: number;
  /** Interval between sweeps. */
  readonly sweepMs?: number;
  /**
   * A pending change whose fact is still not stored after this long belongs to a call that
   * failed before storing it: the caller was not answered OK, so it is dropped.
   */
  readonly abandonAfterMs?: number;
  readonly onError?: (error: unknown, what: string) => void;
}

/** Pending changes one sweep step reads. */
const sweepBatch = 500;

/**
 * Gets every stored change into the change log: the transactional outbox.
 * A call that stores a receipt also keeps it as a pending change (in the same
 * write, or before it); once the call is answered, this publishes the change
 * without making the caller wait, and clears the pending entry when the log
 * has it. What could not be published then (the feed down or stalled, the
 * process killed) is left pending, and a periodic sweep describes it again
 * and publishes it, oldest first. The feed drops what it already has, so a
 * change published by both the call and the sweep is announced once.
 */
export class ChangeAnnouncer {
  readonly #store: OutboxStore;
  readonly #feed: ChangeFeed;
  readonly #describe: ChangeAnnouncerOptions["describe"];
  readonly #clock: () => number;
  readonly #graceMs: number;
  readonly #sweepMs: number;
  readonly #abandonAfterMs: number;
  readonly #onError: (error: unknown, what: string) => void;
  readonly #inFlight = new Set<Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<number> | undefined;
  #closed = false;

  constructor(options: ChangeAnnouncerOptions) {
    this.#store = options.store;
    this.#feed = options.feed;
    this.#describe = options.describe;
    this.#clock = options.clock ?? Date.now;
    this.#graceMs = options.graceMs ?? 2_000;
    this.#sweepMs = options.sweepMs ?? 1_000;
    this.#abandonAfterMs = options.abandonAfterMs ?? 120_000;
    this.#onError = options.onError ?? (() => {});
  }

  /** Publishes changes a call stored (with their pending entries) in the background. */
  announce(
    tenant: string,
    changes: readonly ReceiptChange[],
    pending: readonly PendingChange[],
  ): void {
    if (changes.length === 0) return;
    const work = this.#feed
      .publish(tenant, changes)
      .then(() => this.#store.clearPendingChanges(pending))
      .catch((error: unknown) => this.#onError(error, "publish"))
      .finally(() => this.#inFlight.delete(work));
    this.#inFlight.add(work);
  }

  /** Sweeps every `sweepMs` until close(). */
  start(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setInterval(() => {
      this.sweep().catch((error: unknown) => this.#onError(error, "sweep"));
    }, this.#sweepMs);
    this.#timer.unref();
  }

  /**
   * Publishes what is still pending after the grace period, oldest first;
   * resolves with how many changes it handed to the log. Concurrent calls
   * share the sweep in progress.
   */
  sweep(): Promise<number> {
    this.#sweeping ??= this.#sweepAll().finally(() => {
      this.#sweeping = undefined;
    });
    return this.#sweeping;
  }

  /** Resolves once no publish or sweep is in flight (those started meanwhile included). */
  async idle(): Promise<void> {
    while (this.#inFlight.size > 0 || this.#sweeping !== undefined) {
      await Promise.all([...this.#inFlight, this.#sweeping?.catch(() => undefined)]);
    }
  }

  /** Stops sweeping and waits for the publishes in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#sweeping?.catch(() => undefined);
    await Promise.all(this.#inFlight);
  }

  async #sweepAll(): Promise<number> {
    let published = 0;
    const skipped = new Set<string>();
    for (;;) {
      if (this.#closed) return published;
      const now = this.#clock();
      const batch = (await this.#store.pendingChanges(now - this.#graceMs, sweepBatch)).filter(
        (change) => !skipped.has(identity(change)),
      );
      if (batch.length === 0) return published;
      for (const [tenant, pending] of Map.groupBy(batch, (change) => change.tenant)) {
        const outcomes = await this.#describe(tenant, pending);
        const changes: ReceiptChange[] = [];
        const done: PendingChange[] = [];
        pending.forEach((change, i) => {
          const outcome = outcomes[i];
          if (outcome?.kind === "announce") {
            changes.push(outcome.change);
            done.push(change);
          } else if (
            outcome?.kind === "gone" ||
            now - pendingChangeTime(change) > this.#abandonAfterMs
          ) {
            done.push(change);
          } else {
            skipped.add(identity(change)); // not stored yet: looked at again next sweep
          }
        });
        // In order, and cleared only once the log has them: a failure leaves them all pending.
        await this.#feed.publish(tenant, changes);
        await this.#store.clearPendingChanges(done);
        published += changes.length;
      }
      if (batch.length < sweepBatch) return published;
    }
  }
}
