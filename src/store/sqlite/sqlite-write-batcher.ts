import type { DatabaseSync } from "node:sqlite";

interface PendingWrite {
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
}

/**
 * Group commit for one SQLite connection. Every write of the embedded store and
 * change feed is queued here, and all writes queued during one turn of the
 * event loop commit in one transaction: one fsync for many concurrent calls
 * instead of one (or two) per call. Each write runs in its own savepoint, so a
 * write that throws is undone alone and fails alone. A write's promise settles
 * only after COMMIT returned, so nothing is acknowledged before it is durable.
 *
 * One per connection, made by whoever opens the connection (src/app.ts) and handed to the
 * store and the change feed that share it, so that their writes commit together.
 */
export class SqliteWriteBatcher {
  readonly #db: DatabaseSync;
  #queue: PendingWrite[] = [];
  #scheduled = false;
  #deferred: NodeJS.Timeout | undefined;

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  write<T>(work: () => T): Promise<T> {
    const written = this.#enqueue(work);
    this.#schedule();
    return written;
  }

  /**
   * A write that may wait up to `withinMs` for company: it commits with the next flush another
   * write causes, or alone once `withinMs` passed. For bookkeeping written often (a webhook
   * cursor every 200 ms per endpoint): under load it costs no commit (no fsync) of its own.
   */
  writeSoon<T>(work: () => T, withinMs: number): Promise<T> {
    const written = this.#enqueue(work);
    if (!this.#scheduled && this.#deferred === undefined) {
      this.#deferred = setTimeout(() => this.#schedule(), withinMs);
      this.#deferred.unref();
    }
    return written;
  }

  #enqueue<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
    });
  }

  #schedule(): void {
    clearTimeout(this.#deferred);
    this.#deferred = undefined;
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#queue;
    this.#queue = [];
    const outcomes: { ok: boolean; value: unknown }[] = [];
    try {
      this.#db.exec("BEGIN IMMEDIATE");
      for (const pending of batch) {
        this.#db.exec("SAVEPOINT batched_write");
        try {
          const value = pending.work();
          this.#db.exec("RELEASE batched_write");
          outcomes.push({ ok: true, value });
        } catch (error) {
          this.#db.exec("ROLLBACK TO batched_write");
          this.#db.exec("RELEASE batched_write");
          outcomes.push({ ok: false, value: error });
        }
      }
      this.#db.exec("COMMIT");
    } catch (error) {
      // The commit itself failed (disk full, I/O error, the database closed): nothing of the
      // batch is stored. A closed database has no transaction to roll back.
      if (this.#db.isOpen && this.#db.isTransaction) this.#db.exec("ROLLBACK");
      for (const pending of batch) pending.reject(error);
      return;
    }
    batch.forEach((pending, i) => {
      const outcome = outcomes[i] as { ok: boolean; value: unknown };
      if (outcome.ok) pending.resolve(outcome.value);
      else pending.reject(outcome.value);
    });
  }
}
