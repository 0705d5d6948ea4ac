export interface SuspectEntriesOptions {
  /** Deletes the entry in Redis; rejects when Redis did not answer. */
  readonly drop: (entry: string) => Promise<unknown>;
  /** Deletes every entry in Redis (of this service): what is left when marks overflowed. */
  readonly dropEverything: () => Promise<unknown>;
  /** Whether a drop is worth trying now (the connection is up and not stalled). */
  readonly canTry: () => boolean;
  /** Told of every failed drop, e.g. so that a timeout marks the connection stalled. */
  readonly onFailure: (error: unknown) => void;
  /**
   * How long a mark must be kept at most: by then every entry that could miss the reader has
   * expired (the entry's lifetime plus a rebuild's), and any built later read the reader.
   */
  readonly forgetAfterMs: number;
  /** Marks kept at most (about 350 bytes each); past it, every entry is suspect until dropped. */
  readonly maxMarks?: number;
  readonly retryMs?: number;
  readonly now?: () => number;
}

/**
 * The cache entries this process may have left short of a reader: the receipt is stored but
 * its add failed, or was never tried because Redis was away. Every process serves an entry
 * until it is gone, so these are dropped as soon as Redis answers, retried until they are,
 * and never read here meanwhile. Drops run together (a dead master's entries must not hold up
 * the others' on a cluster), one pass at a time. A long outage under load could mark more than
 * memory should hold: past `maxMarks` the marks give way to one of everything, cleared by
 * dropping every entry (the cache is then rebuilt from the store, a cost paid once).
 */
export class SuspectEntries {
  readonly #options: SuspectEntriesOptions;
  readonly #now: () => number;
  /** Entry -> the mark's number (a drop sent before a later mark does not clear it) and when to forget it. */
  readonly #marks = new Map<string, { readonly seq: number; readonly forgetAt: number }>();
  #seq = 0;
  /** Until when every entry is suspect, having overflowed the marks; 0 if none is. */
  #everythingUntil = 0;
  /** Whether the drop of every entry is in flight; its marks were cleared when it started. */
  #droppingEverything = false;
  #pass: Promise<void> | undefined;
  #again = false;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: SuspectEntriesOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    const everything = this.#everythingSuspect() || this.#droppingEverything;
    return this.#marks.size + (everything ? 1 : 0);
  }

  has(entry: string): boolean {
    if (this.#everythingSuspect() || this.#droppingEverything) return true;
    const mark = this.#marks.get(entry);
    if (mark === undefined) return false;
    if (mark.forgetAt > this.#now()) return true;
    this.#marks.delete(entry);
    return false;
  }

  /** Marks the entries and starts dropping them; resolves once a pass tried. */
  mark(entries: Iterable<string>): Promise<void> {
    const forgetAt = this.#now() + this.#options.forgetAfterMs;
    for (const entry of entries) {
      // Re-inserted, so that the map stays in order of forgetAt.
      this.#marks.delete(entry);
      this.#marks.set(entry, { seq: ++this.#seq, forgetAt });
    }
    if (this.#marks.size > (this.#options.maxMarks ?? 100_000)) {
      this.#marks.clear();
      this.#everythingUntil = forgetAt;
    }
    return this.dropAll();
  }

  /** Tries to drop every marked entry; a pass running takes the newer marks in a next round. */
  dropAll(): Promise<void> {
    this.#again = true;
    this.#pass ??= this.#passes().finally(() => {
      this.#pass = undefined;
      if (this.#marks.size > 0 || this.#everythingSuspect()) this.#retryLater();
    });
    return this.#pass;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#retry = undefined;
  }

  async #passes(): Promise<void> {
    while (this.#again && !this.#closed) {
      this.#again = false;
      this.#forgetExpired();
      if (!this.#options.canTry()) return;
      if (this.#everythingSuspect() && !(await this.#dropEverything())) return;
      const marked = [...this.#marks];
      for (let i = 0; i < marked.length; i += dropsAtOnce) {
        const chunk = marked.slice(i, i + dropsAtOnce);
        let dropped = 0;
        // Each cleared as soon as Redis answers for it, not once the slowest answered.
        await Promise.all(
          chunk.map(([entry, mark]) =>
            this.#options.drop(entry).then(
              () => {
                dropped++;
                if (this.#marks.get(entry)?.seq === mark.seq) this.#marks.delete(entry);
              },
              (error: unknown) => this.#options.onFailure(error),
            ),
          ),
        );
        // Nothing answered: Redis is away again, the retry timer takes it from here.
        if (dropped === 0) return;
      }
    }
  }

  /** Drops every entry; marks made meanwhile are kept, since the drop may have passed theirs. */
  async #dropEverything(): Promise<boolean> {
    const until = this.#everythingUntil;
    this.#everythingUntil = 0;
    this.#droppingEverything = true;
    try {
      await this.#options.dropEverything();
      return true;
    } catch (error) {
      this.#everythingUntil = Math.max(until, this.#everythingUntil);
      this.#options.onFailure(error);
      return false;
    } finally {
      this.#droppingEverything = false;
    }
  }

  #everythingSuspect(): boolean {
    if (this.#everythingUntil === 0) return false;
    if (this.#everythingUntil > this.#now()) return true;
    this.#everythingUntil = 0;
    return false;
  }

  #forgetExpired(): void {
    const now = this.#now();
    for (const [entry, mark] of this.#marks) {
      if (mark.forgetAt > now) return;
      this.#marks.delete(entry);
    }
  }

  #retryLater(): void {
    if (this.#retry !== undefined || this.#closed) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.dropAll();
    }, this.#options.retryMs ?? 250);
    this.#retry.unref();
  }
}

/** Drops in flight at once: enough for a cluster's masters, not a burst of thousands. */
const dropsAtOnce = 256;
