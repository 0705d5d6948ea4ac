import { mapConcurrently } from "../map-concurrently.js";
import type { HorizonStore } from "../receipt-store.js";
import type { CassandraOutbox } from "./cassandra-outbox.js";
import type { CassandraUserIndex } from "./cassandra-user-index.js";
import { type CqlContext, read, toNumber, ttlSeconds, write } from "./cql-values.js";

/**
 * Read horizons (table horizons), their index by time (horizons_by_time, for
 * horizonsFrom) and when each was set (horizon_sets). A horizon moves by a
 * lightweight transaction on its previous value, so it never moves back.
 */
export class CassandraHorizons implements HorizonStore {
  readonly #context: CqlContext;
  readonly #cql: ReturnType<typeof statements>;
  readonly #outbox: CassandraOutbox;
  readonly #index: CassandraUserIndex;

  constructor(context: CqlContext, outbox: CassandraOutbox, index: CassandraUserIndex) {
    this.#context = context;
    this.#index = index;
    this.#cql = statements(context.keyspace);
    this.#outbox = outbox;
  }

  async getHorizon(
    tenant: string,
    conversationId: string,
    readerId: string,
  ): Promise<number | undefined> {
    const row = (
      await this.#context.session.execute(
        this.#cql.getHorizon,
        [tenant, conversationId, readerId],
        read,
      )
    ).first();
    return row ? toNumber(row.get("read_up_to")) : undefined;
  }

  async advanceHorizon(
    tenant: string,
    conversationId: string,
    readerId: string,
    upTo: number,
    at: number,
  ): Promise<{ readonly previous: number | undefined; readonly current: number }> {
    const { session, long } = this.#context;
    const previous = await this.getHorizon(tenant, conversationId, readerId);
    let expected = previous;
    let kept = false;
    for (;;) {
      if (expected !== undefined && expected >= upTo) return { previous, current: expected };
      if (!kept) {
        // Before the horizon moves: a move acknowledged to the caller is always announced,
        // and found by an export or an erasure of its reader.
        await Promise.all([
          this.#outbox.keep([
            { kind: "horizon", tenant, conversationId, readerId, readUpTo: upTo, at },
          ]),
          this.#index.noteConversation(tenant, [readerId], conversationId),
        ]);
        kept = true;
      }
      // The index entry first: the index may hold stale entries, never miss one.
      await session.execute(
        this.#cql.insertHorizonIndex,
        [tenant, conversationId, long(upTo), readerId],
        write,
      );
      const result =
        expected === undefined
          ? await session.execute(
              this.#cql.insertHorizon,
              [tenant, conversationId, readerId, long(upTo)],
              write,
            )
          : await session.execute(
              this.#cql.moveHorizon,
              [long(upTo), tenant, conversationId, readerId, long(expected)],
              write,
            );
      const now = result.wasApplied() ? upTo : toNumber(result.first().get("read_up_to"));
      // Not applied but already at upTo: our own retried write, or an equal move.
      if (now === upTo) {
        if (expected !== undefined)
          await this.#dropHorizonIndex(tenant, conversationId, readerId, expected);
        return { previous, current: upTo };
      }
      expected = now;
    }
  }

  async horizonsFrom(
    tenant: string,
    conversationId: string,
    at: number,
  ): Promise<{ readonly readerId: string; readonly readUpTo: number }[]> {
    const candidates = new Set<string>();
    for await (const row of this.#context.session.rows(
      this.#cql.horizonIndexFrom,
      [tenant, conversationId, this.#context.long(at)],
      { ...read, fetchSize: 1_000 },
    )) {
      candidates.add(row.get("reader_id") as string);
    }
    const horizons = await mapConcurrently(
      [...candidates],
      this.#context.concurrency,
      async (readerId) => ({
        readerId,
        readUpTo: await this.getHorizon(tenant, conversationId, readerId),
      }),
    );
    return horizons.flatMap((h) =>
      h.readUpTo !== undefined && h.readUpTo >= at
        ? [{ readerId: h.readerId, readUpTo: h.readUpTo }]
        : [],
    );
  }

  async noteHorizonSet(
    tenant: string,
    conversationId: string,
    readerId: string,
    readUpTo: number,
    setAt: number,
    expiresAt?: number,
  ): Promise<void> {
    const { long, clock } = this.#context;
    await this.#context.session.execute(
      this.#cql.insertHorizonSet,
      [
        tenant,
        conversationId,
        readerId,
        long(readUpTo),
        long(setAt),
        ttlSeconds(expiresAt, clock()),
      ],
      write,
    );
  }

  horizonSetTimes(
    tenant: string,
    conversationId: string,
    readerId: string,
    times: readonly number[],
  ): Promise<(number | undefined)[]> {
    const { session, long, concurrency } = this.#context;
    return mapConcurrently(times, concurrency, async (at) => {
      const row = (
        await session.execute(
          this.#cql.horizonSetAt,
          [tenant, conversationId, readerId, long(at)],
          read,
        )
      ).first();
      return row ? toNumber(row.get("set_at")) : undefined;
    });
  }

  /**
   * Erases the reader's horizon in the conversation with its index entries: the one of its
   * value and those of every value it was set to (stale ones a crash may have left). The
   * horizon row goes last, by the same lightweight transactions that move it. Returns 1 if
   * there was a horizon.
   */
  async eraseReader(tenant: string, conversationId: string, readerId: string): Promise<number> {
    const { session, long } = this.#context;
    const current = await this.getHorizon(tenant, conversationId, readerId);
    const values = new Set(
      (await this.setsOf(tenant, conversationId, readerId)).map((s) => s.readUpTo),
    );
    if (current !== undefined) values.add(current);
    await mapConcurrently([...values], this.#context.concurrency, (readUpTo) =>
      session.execute(
        this.#cql.deleteHorizonIndex,
        [tenant, conversationId, long(readUpTo), readerId],
        write,
      ),
    );
    if (current === undefined) return 0;
    await session.execute(this.#cql.deleteHorizon, [tenant, conversationId, readerId], write);
    return 1;
  }

  /** Erases when the reader's horizon was set (one partition); returns how many notes there were. */
  async eraseSetTimes(tenant: string, conversationId: string, readerId: string): Promise<number> {
    const notes = await this.setsOf(tenant, conversationId, readerId);
    if (notes.length === 0) return 0;
    await this.#context.session.execute(
      this.#cql.deleteHorizonSets,
      [tenant, conversationId, readerId],
      { ...write, timestamp: this.#context.writeClock.nextMicros() },
    );
    return notes.length;
  }

  /** Every noted set time of the reader's horizon, lowest horizon first. */
  async setsOf(
    tenant: string,
    conversationId: string,
    readerId: string,
  ): Promise<{ readonly readUpTo: number; readonly setAt: number }[]> {
    const notes: { readUpTo: number; setAt: number }[] = [];
    for await (const row of this.#context.session.rows(
      this.#cql.horizonSetsOf,
      [tenant, conversationId, readerId],
      { ...read, fetchSize: 1_000 },
    )) {
      notes.push({ readUpTo: toNumber(row.get("read_up_to")), setAt: toNumber(row.get("set_at")) });
    }
    return notes;
  }

  async #dropHorizonIndex(
    tenant: string,
    conversationId: string,
    readerId: string,
    readUpTo: number,
  ): Promise<void> {
    try {
      await this.#context.session.execute(
        this.#cql.deleteHorizonIndex,
        [tenant, conversationId, this.#context.long(readUpTo), readerId],
        write,
      );
    } catch {
      // A stale index entry is harmless: horizonsFrom checks each against `horizons`.
    }
  }
}

function statements(keyspace: string) {
  const t = (table: string) => `${keyspace}.${table}`;
  return {
    getHorizon: `SELECT read_up_to FROM ${t("horizons")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ?`,
    insertHorizon: `INSERT INTO ${t("horizons")} (tenant, conversation_id, reader_id, read_up_to)
      VALUES (?, ?, ?, ?) IF NOT EXISTS`,
    moveHorizon: `UPDATE ${t("horizons")} SET read_up_to = ?
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? IF read_up_to = ?`,
    insertHorizonIndex: `INSERT INTO ${t("horizons_by_time")} (tenant, conversation_id, read_up_to, reader_id)
      VALUES (?, ?, ?, ?)`,
    deleteHorizonIndex: `DELETE FROM ${t("horizons_by_time")}
      WHERE tenant = ? AND conversation_id = ? AND read_up_to = ? AND reader_id = ?`,
    insertHorizonSet: `INSERT INTO ${t("horizon_sets")} (tenant, conversation_id, reader_id, read_up_to, set_at)
      VALUES (?, ?, ?, ?, ?) USING TTL ?`,
    horizonSetAt: `SELECT set_at FROM ${t("horizon_sets")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? AND read_up_to >= ? LIMIT 1`,
    deleteHorizon: `DELETE FROM ${t("horizons")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? IF EXISTS`,
    horizonSetsOf: `SELECT read_up_to, set_at FROM ${t("horizon_sets")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ?`,
    deleteHorizonSets: `DELETE FROM ${t("horizon_sets")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ?`,
    horizonIndexFrom: `SELECT reader_id FROM ${t("horizons_by_time")}
      WHERE tenant = ? AND conversation_id = ? AND read_up_to >= ?`,
  };
}
