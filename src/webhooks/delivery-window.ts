import type { WebhookEvent } from "../api/webhook-payload.js";

/** A change of the log read ahead of the cursor; done once delivered, given up or not wanted. */
export interface WindowEntry {
  readonly position: string;
  /** When it happened or was read: what lag is measured from. */
  readonly at: number;
  done: boolean;
}

/** Events taken for one POST: of conversations none of which has another batch out. */
export interface TakenEvents {
  readonly events: readonly WebhookEvent[];
  readonly entries: readonly WindowEntry[];
  readonly conversations: readonly string[];
}

/**
 * What one endpoint's delivery has read ahead of its cursor, in log order, with no I/O of its
 * own. Events wait per conversation and a conversation gives out one batch at a time, which
 * is what keeps each conversation's events in log order at the receiver; the cursor may move
 * only past a prefix of entries all done, so whatever is not yet delivered stays after it.
 */
export class DeliveryWindow {
  readonly #entries: WindowEntry[] = [];
  /** Entries before this index are behind the cursor, kept until compacted. */
  #start = 0;
  /** Queued events per conversation, in log order; a conversation's entry goes when it empties. */
  readonly #queued = new Map<string, { event: WebhookEvent; entry: WindowEntry }[]>();
  /** Conversations with a batch in flight or waiting to be retried. */
  readonly #busy = new Set<string>();
  #undelivered = 0;

  /**
   * How many more changes may be read. Undelivered events are bounded by `windowSize`;
   * delivered ones behind an old undelivered one (a conversation still retrying) cost a few
   * bytes each, and are bounded ten times higher.
   */
  room(windowSize: number): number {
    return Math.min(
      windowSize - this.#undelivered,
      10 * windowSize - (this.#entries.length - this.#start),
    );
  }

  /** Whether everything read is behind the cursor. */
  get empty(): boolean {
    return this.#start === this.#entries.length;
  }

  /** A change read: `event` to deliver, or none when the endpoint does not want it. */
  add(position: string, at: number, event: WebhookEvent | undefined): void {
    const entry: WindowEntry = { position, at, done: event === undefined };
    this.#entries.push(entry);
    if (event === undefined) return;
    this.#undelivered += 1;
    let queue = this.#queued.get(event.conversationId);
    if (queue === undefined) {
      queue = [];
      this.#queued.set(event.conversationId, queue);
    }
    queue.push({ event, entry });
  }

  /**
   * The oldest queued events of conversations not busy, up to `batchSize`; they become busy.
   * With `unlessSince`, a batch that would not be full is not taken while the oldest of its
   * events is later than `unlessSince` (it may wait for company).
   */
  take(batchSize: number, unlessSince?: number): TakenEvents | undefined {
    if (unlessSince !== undefined) {
      const { count, oldestAt } = this.#available(batchSize);
      if (count < batchSize && oldestAt > unlessSince) return undefined;
    }
    const events: WebhookEvent[] = [];
    const entries: WindowEntry[] = [];
    const conversations: string[] = [];
    for (const [conversation, queue] of this.#queued) {
      if (events.length >= batchSize) break;
      if (this.#busy.has(conversation)) continue;
      const taken = queue.splice(0, batchSize - events.length);
      for (const { event, entry } of taken) {
        events.push(event);
        entries.push(entry);
      }
      conversations.push(conversation);
      this.#busy.add(conversation);
      if (queue.length === 0) this.#queued.delete(conversation);
    }
    return events.length === 0 ? undefined : { events, entries, conversations };
  }

  /** Events that could be taken now (counted up to `atMost`), and when the oldest happened. */
  #available(atMost: number): { count: number; oldestAt: number } {
    let count = 0;
    let oldestAt = Number.POSITIVE_INFINITY;
    for (const [conversation, queue] of this.#queued) {
      if (count >= atMost) break;
      if (this.#busy.has(conversation)) continue;
      count += queue.length;
      oldestAt = Math.min(oldestAt, queue[0]?.entry.at ?? oldestAt);
    }
    return { count, oldestAt };
  }

  /** When the oldest event that could be taken now happened, if there is one. */
  oldestAvailableAt(): number | undefined {
    const { count, oldestAt } = this.#available(1);
    return count > 0 ? oldestAt : undefined;
  }

  /** A batch delivered or given up: its entries are done, its conversations free again. */
  finish(taken: Omit<TakenEvents, "events">): void {
    for (const entry of taken.entries) entry.done = true;
    this.#undelivered -= taken.entries.length;
    for (const conversation of taken.conversations) this.#busy.delete(conversation);
  }

  /** Moves past the entries done at the front; the position of the last one, if any moved. */
  advance(): string | undefined {
    let position: string | undefined;
    while (this.#start < this.#entries.length) {
      const entry = this.#entries[this.#start] as WindowEntry;
      if (!entry.done) break;
      position = entry.position;
      this.#start += 1;
    }
    if (this.#start > 4_096) {
      this.#entries.splice(0, this.#start);
      this.#start = 0;
    }
    return position;
  }

  /** When the oldest entry not yet done happened, if there is one. */
  oldestAt(): number | undefined {
    return this.#entries[this.#start]?.at;
  }
}
