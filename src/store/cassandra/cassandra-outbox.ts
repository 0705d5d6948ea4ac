import { randomUUID } from "node:crypto";
import { type PendingChange, pendingChangeTime } from "../../domain/model.js";
import { pendingChangeIdentity as identity, pendingChangeKey } from "../pending-change-key.js";
import { LegacyCassandraOutbox } from "./cassandra-legacy-outbox.js";
import { CassandraOutboxWriters, type OutboxWriter } from "./cassandra-outbox-writers.js";
import type { CqlSession, StatementOptions } from "./cql-session.js";

export interface CassandraOutboxOptions {
  readonly clock?: () => number;
  /** A writer that has not swept its own entries for this long is taken for dead: the others do. */
  readonly writerLapseMs?: number;
  /**
   * Entries a writer holds in memory at most; past them it leaves them to the others' sweeps.
   * Also the most tombstones one read of a takeover passes (Cassandra fails a read at 100,000).
   */
  readonly memoryEntries?: number;
}

/** Width of an entries partition, by the writer's clock when it kept them. */
const bucketMs = 60_000;
/**
 * A takeover reads a dead writer's entries this much of its clock at a time, so that one read
 * passes the tombstones of that long at most, even behind an entry held pending for minutes.
 */
const sliceMs = 5_000;
/** How often a sweeping writer says so (and how long the list of writers is reused). */
const heartbeatMs = 1_000;
/**
 * A dead writer's keeps still in flight have landed this long after its last heartbeat: a
 * writer keeps under one name at most half of it past its last heartbeat, then takes a new one.
 */
const settleMs = 60_000;
/** Longest an entry lives (the table's TTL): no dead writer is read further back. */
const entryTtlMs = 604_800_000;
/** How often the outbox of schema 3 is swept: only instances of an earlier version write to it. */
const legacySweepMs = 30_000;
/** Locations of other writers' entries handed out, kept until cleared (a bound, not a target). */
const elsewhereEntries = 100_000;

const write: StatementOptions = { idempotent: true };
const read: StatementOptions = { idempotent: true };

const bucketOf = (ms: number): number => Math.floor(ms / bucketMs);

interface Kept {
  readonly change: PendingChange;
  readonly writer: string;
  readonly keptAt: number;
}
type Location = { readonly writer: string; readonly keptAt: number } | "legacy";

/**
 * The Cassandra outbox (schema 9: outbox_entries by writing instance, outbox_writers). Entries
 * are written before the facts they announce, since Cassandra has no transaction across
 * tables: an entry whose fact never got stored is recognised by the announcer (the fact is
 * absent) and dropped once old. A writer keeps its entries in memory too, hands them to its
 * own sweeps from there and clears them: while it sweeps (its heartbeat), nobody reads its
 * partitions, so no read passes the tombstones that clearing leaves. Once its heartbeat
 * lapses (killed, paused, its sweeps stuck), every other instance's sweep reads its entries
 * from the oldest it still held; a writer that keeps without sweeping starts afresh under a
 * new name before it would be taken for dead, so that its keeps always land where someone
 * looks. Two sweeps handing out the same entry publish it twice: the change log keeps one.
 */
export class CassandraOutbox {
  readonly #session: CqlSession;
  readonly #cql: ReturnType<typeof statements>;
  readonly #writers: CassandraOutboxWriters;
  readonly #legacy: LegacyCassandraOutbox;
  readonly #clock: () => number;
  readonly #lapseMs: number;
  readonly #memoryEntries: number;
  #writer = randomUUID();
  #own = new Map<string, Kept>();
  #registered: Promise<void> | undefined;
  #lastBeat = Number.NEGATIVE_INFINITY;
  #lastOldest = Number.NEGATIVE_INFINITY;
  #lastTime = Number.NEGATIVE_INFINITY;
  #lastLegacySweep = Number.NEGATIVE_INFINITY;
  #listed: { readonly at: number; readonly writers: OutboxWriter[] } | undefined;
  readonly #elsewhere = new Map<string, Location>();
  /** Where the next read of a dead writer starts, and when that was found, by writer@heartbeat. */
  readonly #takeovers = new Map<string, { readonly from: number; readonly at: number }>();

  constructor(session: CqlSession, keyspace: string, options: CassandraOutboxOptions = {}) {
    this.#session = session;
    this.#cql = statements(keyspace);
    this.#writers = new CassandraOutboxWriters(session, keyspace);
    this.#legacy = new LegacyCassandraOutbox(session, keyspace);
    this.#clock = options.clock ?? Date.now;
    this.#lapseMs = options.writerLapseMs ?? 10_000;
    this.#memoryEntries = options.memoryEntries ?? 20_000;
  }

  /** This process's name as a writer (a new one after it starts afresh). */
  get writer(): string {
    return this.#writer;
  }

  /** Writes entries, one single-partition batch per partition, once the writer is registered. */
  async keep(changes: readonly PendingChange[]): Promise<void> {
    if (changes.length === 0) return;
    const now = this.#now();
    // Not sweeping (or swamped): start afresh, leaving what is kept under the old name to others.
    if (
      (this.#registered !== undefined && now - this.#lastBeat > settleMs / 2) ||
      this.#own.size + changes.length > this.#memoryEntries
    ) {
      this.#writer = randomUUID();
      this.#own = new Map();
      this.#registered = undefined;
    }
    const writer = this.#writer;
    const kept = changes.map((change) => {
      const id = identity(change);
      const entry: Kept = { change, writer, keptAt: this.#own.get(id)?.keptAt ?? now };
      this.#own.set(id, entry);
      return entry;
    });
    this.#registered ??= this.#beat(now).catch((error: unknown) => {
      this.#registered = undefined;
      throw error;
    });
    await this.#registered;
    await this.#perPartition(kept, this.#cql.keep, (change) => [JSON.stringify(change)]);
  }

  async pending(before: number, limit: number): Promise<PendingChange[]> {
    const now = this.#now();
    if (this.#registered !== undefined && now - this.#lastBeat >= heartbeatMs)
      await this.#beat(now);
    const found = await this.#fromTheDead(now, before, limit);
    for (const { change } of this.#own.values()) {
      if (found.length >= limit) break;
      if (pendingChangeTime(change) < before) found.push(change);
    }
    if (found.length < limit && now - this.#lastLegacySweep >= legacySweepMs) {
      const legacy = await this.#legacy.pending(before, limit - found.length);
      this.#lastLegacySweep = now;
      for (const change of legacy) this.#handedOut(change, "legacy");
      found.push(...legacy);
    }
    return found.sort((a, b) => pendingChangeTime(a) - pendingChangeTime(b));
  }

  async clear(changes: readonly PendingChange[]): Promise<void> {
    const rows: Kept[] = [];
    const legacy: PendingChange[] = [];
    for (const change of changes) {
      const id = identity(change);
      const at = this.#own.get(id) ?? this.#elsewhere.get(id);
      if (at === "legacy") legacy.push(change);
      else if (at !== undefined) rows.push({ ...at, change });
      // Else kept under a name this writer left: swept from there, published again, cleared.
    }
    await Promise.all([this.#perPartition(rows, this.#cql.clear), this.#legacy.clear(legacy)]);
    for (const change of changes) {
      const id = identity(change);
      this.#own.delete(id);
      this.#elsewhere.delete(id);
    }
    // Cleared but not swept (no sweep running, or a stuck one): the oldest moves on all the
    // same, so that whoever takes this writer over reads from there, past few tombstones.
    // While the writer sweeps, its heartbeats write the oldest already.
    const now = this.#now();
    if (
      this.#registered !== undefined &&
      now - this.#lastBeat >= 2 * heartbeatMs &&
      now - this.#lastOldest >= heartbeatMs
    ) {
      this.#lastOldest = now;
      await this.#writers.noteOldest(this.#writer, this.#oldest(now));
    }
  }

  /**
   * The pending entries of writers whose heartbeat lapsed, from the oldest each still held, or
   * from the oldest found pending by the last read of it: a takeover passes the tombstones of
   * one batch it cleared, not of all. Keeps of the writer in flight may land behind that mark
   * until its heartbeat is settleMs old, so the first read after that starts from the oldest.
   */
  async #fromTheDead(now: number, before: number, limit: number): Promise<PendingChange[]> {
    const found: PendingChange[] = [];
    for (const dead of await this.#deadWriters(now)) {
      if (found.length >= limit) break;
      const key = `${dead.writer}@${dead.heartbeatAt}`;
      const settled = now - dead.heartbeatAt > settleMs;
      const mark = this.#takeovers.get(key);
      const trusted = mark !== undefined && (!settled || mark.at - dead.heartbeatAt > settleMs);
      const from = Math.max(trusted ? mark.from : dead.oldestAt, now - entryTtlMs);
      const end = Math.min(now, dead.heartbeatAt + settleMs);
      let oldestStored: number | undefined;
      for (let start = from; start <= end && found.length < limit; ) {
        const sliceEnd = (Math.floor(start / sliceMs) + 1) * sliceMs;
        const result = await this.#session.execute(
          this.#cql.pending,
          [dead.writer, bucketOf(start), new Date(start), new Date(sliceEnd), limit - found.length],
          read,
        );
        start = sliceEnd;
        for (const row of result.rows) {
          const change = JSON.parse(row.get("payload") as string) as PendingChange;
          const keptAt = (row.get("kept_at") as Date).getTime();
          oldestStored ??= keptAt;
          this.#handedOut(change, { writer: dead.writer, keptAt });
          if (pendingChangeTime(change) < before) found.push(change);
        }
      }
      if (oldestStored !== undefined) {
        this.#takeovers.set(key, { from: oldestStored, at: now });
      } else if (settled) {
        // Nothing left of it, and nothing more can land: no sweep reads it again.
        await this.#writers.markSwept(dead.writer, dead.heartbeatAt);
        this.#takeovers.delete(key);
        this.#listed = undefined;
      } else {
        this.#takeovers.set(key, { from, at: trusted ? mark.at : now });
      }
    }
    return found;
  }

  async #deadWriters(now: number): Promise<OutboxWriter[]> {
    if (this.#listed === undefined || now - this.#listed.at >= heartbeatMs) {
      this.#listed = { at: now, writers: await this.#writers.list() };
    }
    return this.#listed.writers.filter(
      (w) =>
        w.writer !== this.#writer &&
        now - w.heartbeatAt > this.#lapseMs &&
        (w.sweptTo === undefined || w.sweptTo < w.heartbeatAt),
    );
  }

  #handedOut(change: PendingChange, location: Location): void {
    if (this.#elsewhere.size >= elsewhereEntries) this.#elsewhere.clear(); // cleared elsewhere
    this.#elsewhere.set(identity(change), location);
  }

  /** Says the writer sweeps, and that none of its entries kept before its oldest is pending. */
  async #beat(now: number): Promise<void> {
    this.#lastBeat = Math.max(this.#lastBeat, now);
    this.#lastOldest = this.#lastBeat;
    await this.#writers.beat(this.#writer, now, this.#oldest(now));
  }

  #oldest(now: number): number {
    return Math.min(this.#own.values().next().value?.keptAt ?? now, now);
  }

  /** The clock, never going back: an entry is never kept before the oldest its writer announced. */
  #now(): number {
    this.#lastTime = Math.max(this.#lastTime, this.#clock());
    return this.#lastTime;
  }

  /** One statement per entry, keyed by it, as one unlogged batch per partition. */
  async #perPartition(
    rows: readonly Kept[],
    cql: string,
    more: (change: PendingChange) => unknown[] = () => [],
  ): Promise<void> {
    const byPartition = Map.groupBy(rows, (r) => `${r.writer}\u0000${bucketOf(r.keptAt)}`);
    await Promise.all(
      [...byPartition.values()].map((group) =>
        this.#session.batch(
          group.map(({ change, writer, keptAt }) => ({
            cql,
            params: [
              writer,
              bucketOf(keptAt),
              new Date(keptAt),
              change.tenant,
              pendingChangeKey(change),
              ...more(change),
            ],
          })),
          { ...write, logged: false },
        ),
      ),
    );
  }
}

function statements(keyspace: string) {
  const table = `${keyspace}.outbox_entries`;
  return {
    keep: `INSERT INTO ${table} (writer, bucket, kept_at, tenant, change_key, payload) VALUES (?, ?, ?, ?, ?, ?)`,
    pending: `SELECT kept_at, payload FROM ${table} WHERE writer = ? AND bucket = ? AND kept_at >= ? AND kept_at < ? LIMIT ?`,
    clear: `DELETE FROM ${table} WHERE writer = ? AND bucket = ? AND kept_at = ? AND tenant = ? AND change_key = ?`,
  };
}
