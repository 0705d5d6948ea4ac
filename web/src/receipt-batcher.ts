import { Code, ConnectError } from "@connectrpc/connect";

export interface ReceiptBatcherOptions {
  /** Acknowledges messages (SendReceipts); rejects with the service's error. */
  readonly send: (messageIds: readonly string[]) => Promise<void>;
  /** Called after messages are acknowledged. */
  readonly onAcknowledged?: (messageIds: readonly string[]) => void;
  /** How long to gather ids into one call. */
  readonly delayMs?: number;
  /** First wait before retrying after a transient failure; doubles up to maxRetryMs. */
  readonly firstRetryMs?: number;
  readonly maxRetryMs?: number;
}

/** SendReceipts takes at most this many ids per call. */
export const maxIdsPerCall = 100;

/** Errors that a later attempt may not meet: the receipts stay queued. */
const transient = new Set([
  Code.Unavailable,
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
  Code.Aborted,
  Code.Internal,
  Code.Canceled,
]);

/**
 * Turns "the user saw these messages" into few SendReceipts calls: ids
 * gathered for a moment go out together, at most 100 per call, each id once.
 * Receipts that fail for a transient reason (the service restarting) are
 * retried with backoff; a batch refused for one bad id is split to find it,
 * so that the others still count.
 */
export class ReceiptBatcher {
  readonly #options: ReceiptBatcherOptions;
  readonly #queued = new Set<string>();
  readonly #done = new Set<string>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #flushing = false;
  #failures = 0;
  #signedOut = false;

  constructor(options: ReceiptBatcherOptions) {
    this.#options = options;
  }

  /** Queues the user's receipt for a message, unless it was already sent. */
  add(messageId: string): void {
    if (this.#done.has(messageId) || this.#queued.has(messageId)) return;
    this.#queued.add(messageId);
    this.#schedule(this.#options.delayMs ?? 250);
  }

  /** Records messages acknowledged another way (MarkConversationRead), so they are not sent again. */
  markAcknowledged(messageIds: Iterable<string>): void {
    const ids = [...messageIds].filter((id) => !this.#done.has(id));
    for (const id of ids) {
      this.#done.add(id);
      this.#queued.delete(id);
    }
    if (ids.length > 0) this.#options.onAcknowledged?.(ids);
  }

  #schedule(ms: number): void {
    if (this.#timer !== undefined || this.#flushing || this.#signedOut) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#flush();
    }, ms);
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    let retry = false;
    try {
      while (this.#queued.size > 0) {
        const batch = [...this.#queued].slice(0, maxIdsPerCall);
        for (const id of batch) this.#queued.delete(id);
        const failed = await this.#sendIsolating(batch);
        if (failed.length > 0) {
          for (const id of failed) this.#queued.add(id);
          retry = true;
          break;
        }
      }
    } finally {
      this.#flushing = false;
    }
    if (retry) {
      const first = this.#options.firstRetryMs ?? 1_000;
      this.#schedule(Math.min(this.#options.maxRetryMs ?? 10_000, first * 2 ** this.#failures));
      this.#failures += 1;
    } else {
      this.#failures = 0;
      // Ids seen while this flush was under way.
      if (this.#queued.size > 0) this.#schedule(this.#options.delayMs ?? 250);
    }
  }

  /** Sends a batch; returns the ids to retry later. Ids the service refuses for good are dropped. */
  async #sendIsolating(ids: readonly string[]): Promise<readonly string[]> {
    const fresh = ids.filter((id) => !this.#done.has(id));
    if (fresh.length === 0) return [];
    try {
      await this.#options.send(fresh);
      this.markAcknowledged(fresh);
      return [];
    } catch (error) {
      const failure = ConnectError.from(error);
      if (transient.has(failure.code)) return fresh;
      if (failure.code === Code.Unauthenticated) {
        // The session is over: keep the receipts, but stop calling until the page is reloaded.
        this.#signedOut = true;
        return fresh;
      }
      if (fresh.length === 1) {
        // Not in this message's audience, or not a tracked message: nothing to acknowledge.
        console.warn(`receipt for ${fresh[0]} refused: ${failure.message}`);
        for (const id of fresh) this.#done.add(id);
        return [];
      }
      const half = Math.ceil(fresh.length / 2);
      return [
        ...(await this.#sendIsolating(fresh.slice(0, half))),
        ...(await this.#sendIsolating(fresh.slice(half))),
      ];
    }
  }
}
