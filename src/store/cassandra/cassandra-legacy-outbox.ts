import { type PendingChange, pendingChangeTime } from "../../domain/model.js";
import { pendingChangeKey } from "../pending-change-key.js";
import type { CqlSession, StatementOptions } from "./cql-session.js";

/** Shards of the outbox: writers spread over this many partitions per bucket. */
const shards = 4;
/** Width of an outbox bucket. */
const bucketMs = 30_000;
/**
 * An entry lands in the bucket of its fact's time, written a call's duration later at most
 * (a unary call is cut off at RECEIPTS_MAX_CALL_SECONDS, 30 s by default), give or take the
 * clock skew between instances: a bucket is taken as closed only this long after it ended.
 */
const settleMs = 150_000;
/** How far back a shard never swept before is looked at (its first sweep creates its row). */
const firstSweepLookbackMs = 3_600_000;

const write: StatementOptions = { idempotent: true };
const read: StatementOptions = { idempotent: true };

const bucketOf = (ms: number): number => Math.floor(ms / bucketMs);

/** The shard an earlier version wrote a change to: of its reader, or of a deletion's conversation. */
export function legacyShardOf(change: PendingChange): number {
  let hash = 0;
  const by = change.kind === "deletion" ? change.conversationId : change.readerId;
  for (const char of `${change.tenant}\u0000${by}`) {
    hash = (hash * 31 + (char.codePointAt(0) ?? 0)) | 0;
  }
  return Math.abs(hash) % shards;
}

/**
 * The outbox of schema 3 (table pending_changes), which instances of an
 * earlier version still write to during a rolling upgrade: swept and cleared
 * here, never written. Every sweep read each open partition whole, the
 * tombstones of its cleared entries included, which is why schema 9 replaced
 * it (CassandraOutbox). Sweeps walk each shard's buckets from its swept mark,
 * moving the mark past buckets that are over and empty; once no instance
 * writes here, a sweep reads a few empty partitions.
 */
export class LegacyCassandraOutbox {
  readonly #session: CqlSession;
  readonly #cql: ReturnType<typeof statements>;
  /** Swept marks this process knows, by shard. */
  readonly #swept = new Map<number, number>();

  constructor(session: CqlSession, keyspace: string) {
    this.#session = session;
    this.#cql = statements(keyspace);
  }

  async pending(before: number, limit: number): Promise<PendingChange[]> {
    const found: PendingChange[] = [];
    const last = bucketOf(before);
    const lastClosed = bucketOf(before - settleMs) - 1;
    for (let shard = 0; shard < shards && found.length < limit; shard++) {
      let bucket = await this.#sweptMark(shard, before);
      let empty = true;
      for (; bucket <= last && found.length < limit; bucket++) {
        const result = await this.#session.execute(
          this.#cql.pending,
          [shard, bucket, limit - found.length],
          read,
        );
        const entries = result.rows.map(
          (row) => JSON.parse(row.get("payload") as string) as PendingChange,
        );
        found.push(...entries.filter((change) => pendingChangeTime(change) < before));
        empty &&= entries.length === 0;
        // A closed bucket found empty stays empty: the mark moves past it.
        if (empty && bucket <= lastClosed) await this.#markSwept(shard, bucket + 1);
      }
    }
    return found.sort((a, b) => pendingChangeTime(a) - pendingChangeTime(b));
  }

  clear(changes: readonly PendingChange[]): Promise<void> {
    return this.#perPartition(changes, this.#cql.clear);
  }

  /** One statement per change, keyed by it, as one unlogged batch per partition. */
  async #perPartition(changes: readonly PendingChange[], cql: string): Promise<void> {
    const key = (c: PendingChange) => [
      legacyShardOf(c),
      bucketOf(pendingChangeTime(c)),
      c.tenant,
      pendingChangeKey(c),
    ];
    const byPartition = Map.groupBy(
      changes,
      (c) => `${legacyShardOf(c)}:${bucketOf(pendingChangeTime(c))}`,
    );
    await Promise.all(
      [...byPartition.values()].map((group) =>
        this.#session.batch(
          group.map((change) => ({ cql, params: key(change) })),
          { ...write, logged: false },
        ),
      ),
    );
  }

  async #sweptMark(shard: number, now: number): Promise<number> {
    const known = this.#swept.get(shard);
    if (known !== undefined) return known;
    const row = (await this.#session.execute(this.#cql.sweptMark, [shard], read)).first();
    const mark = row ? (row.get("bucket") as number) : bucketOf(now - firstSweepLookbackMs);
    if (!row) await this.#session.execute(this.#cql.markSwept, [mark, shard], write);
    this.#swept.set(shard, mark);
    return mark;
  }

  async #markSwept(shard: number, bucket: number): Promise<void> {
    if ((this.#swept.get(shard) ?? Number.NEGATIVE_INFINITY) >= bucket) return;
    this.#swept.set(shard, bucket);
    await this.#session.execute(this.#cql.markSwept, [bucket, shard], write);
  }
}

function statements(keyspace: string) {
  const table = `${keyspace}.pending_changes`;
  return {
    pending: `SELECT payload FROM ${table} WHERE shard = ? AND bucket = ? LIMIT ?`,
    clear: `DELETE FROM ${table} WHERE shard = ? AND bucket = ? AND tenant = ? AND change_key = ?`,
    sweptMark: `SELECT bucket FROM ${keyspace}.pending_changes_swept WHERE shard = ?`,
    markSwept: `UPDATE ${keyspace}.pending_changes_swept SET bucket = ? WHERE shard = ?`,
  };
}
