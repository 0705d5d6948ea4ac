import { type Client, types } from "cassandra-driver";
import type { CqlSession, StatementOptions } from "./cql-session.js";

/** Every statement of the store can be retried as is: writes carry their own write time. */
export const write: StatementOptions = { idempotent: true };
export const read: StatementOptions = { idempotent: true };

/** bigint columns come back as bigint or Long, depending on the Client's encoding. */
export function toNumber(value: unknown): number {
  if (typeof value === "number") return value;
  if (typeof value === "bigint") return Number(value);
  if (value instanceof types.Long) return value.toNumber();
  throw new TypeError(`expected a bigint column value, got ${String(value)}`);
}

export function optionalNumber(value: unknown): number | undefined {
  return value === null || value === undefined ? undefined : toNumber(value);
}

/** A bigint column value in the encoding the Client was configured with. */
export type LongEncoder = (value: number) => number | bigint;

export function longEncoderOf(client: Client): LongEncoder {
  const encoding = (client as unknown as { options?: { encoding?: { useBigIntAsLong?: boolean } } })
    .options?.encoding;
  return encoding?.useBigIntAsLong === true ? (value) => BigInt(value) : (value) => value;
}

/**
 * Strictly increasing microseconds, for write times. One per store, shared by all its
 * modules: a deletion written by one must be later than a row written by another.
 */
export class WriteClock {
  readonly #clock: () => number;
  #lastMicros = 0;

  constructor(clock: () => number) {
    this.#clock = clock;
  }

  nextMicros(): number {
    this.#lastMicros = Math.max(this.#clock() * 1_000, this.#lastMicros + 1);
    return this.#lastMicros;
  }
}

/** What every module of the Cassandra store is built with. */
export interface CqlContext {
  readonly session: CqlSession;
  /** Table names are `${keyspace}.${table}`. */
  readonly keyspace: string;
  readonly long: LongEncoder;
  readonly writeClock: WriteClock;
  /** Queries one store call keeps in flight. */
  readonly concurrency: number;
  /** The store's clock (ms). */
  readonly clock: () => number;
}

/**
 * The TTL (seconds) of a row about a message that the tenant's retention removes at
 * `expiresAt`: 0 (no TTL) when it has none, and at least 1 (Cassandra reads 0 as "forever").
 */
export function ttlSeconds(expiresAt: number | undefined, now: number): number {
  if (expiresAt === undefined) return 0;
  return Math.max(1, Math.ceil((expiresAt - now) / 1000));
}

/**
 * The write time of a deletion's tombstones: later than any write time the store will ever
 * use, so that no write of a deleted message's rows that arrives late (a receipt racing the
 * deletion, a retry) is ever visible. Message ids are never reused (the deletion marker).
 */
export const afterEveryWriteMicros = 2 ** 52;
