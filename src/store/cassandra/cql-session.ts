import { type Client, errors, types } from "cassandra-driver";
import type { Consistency, SerialConsistency } from "../../config.js";
import { StoreUnavailableError } from "../../domain/errors.js";

export type { Consistency, SerialConsistency };

const consistencyCodes: Record<Consistency | SerialConsistency, number> = {
  ONE: types.consistencies.one,
  LOCAL_ONE: types.consistencies.localOne,
  QUORUM: types.consistencies.quorum,
  LOCAL_QUORUM: types.consistencies.localQuorum,
  EACH_QUORUM: types.consistencies.eachQuorum,
  ALL: types.consistencies.all,
  SERIAL: types.consistencies.serial,
  LOCAL_SERIAL: types.consistencies.localSerial,
};

export interface StatementOptions {
  /** Whether running the statement twice leaves the same state: the driver retries only those. */
  readonly idempotent: boolean;
  /** Write time in microseconds; retries of a write reuse it, so a later write or delete wins. */
  readonly timestamp?: number;
  readonly fetchSize?: number;
  /** Read at the serial level: sees every committed lightweight transaction. */
  readonly serialRead?: boolean;
}

export type Params = readonly unknown[];

/**
 * The store's way into Cassandra: every statement prepared, with an explicit
 * consistency level, and its idempotence stated. Failures that mean "the
 * cluster could not be reached or did not answer in time" become
 * StoreUnavailableError; anything else (a bug) is rethrown as is.
 */
export class CqlSession {
  readonly #client: Client;
  readonly #consistency: number;
  readonly #serialConsistency: number;

  constructor(
    client: Client,
    options: { consistency: Consistency; serialConsistency: SerialConsistency },
  ) {
    this.#client = client;
    this.#consistency = consistencyCodes[options.consistency];
    this.#serialConsistency = consistencyCodes[options.serialConsistency];
  }

  async execute(cql: string, params: Params, options: StatementOptions): Promise<types.ResultSet> {
    try {
      return await this.#client.execute(cql, params as unknown[], this.#queryOptions(options));
    } catch (error) {
      throw storeError(error);
    }
  }

  /**
   * A batch. Unlogged: atomic and cheap when every statement hits one
   * partition. Logged: all statements or none, across partitions (through the
   * batch log), at about twice the cost of the writes.
   */
  async batch(
    statements: readonly { readonly cql: string; readonly params: Params }[],
    options: StatementOptions & { readonly logged: boolean },
  ): Promise<void> {
    if (statements.length === 0) return;
    try {
      await this.#client.batch(
        statements.map((s) => ({ query: s.cql, params: s.params as unknown[] })),
        { ...this.#queryOptions(options), logged: options.logged },
      );
    } catch (error) {
      throw storeError(error);
    }
  }

  /** All rows of a query, fetched page by page as the caller iterates. */
  async *rows(cql: string, params: Params, options: StatementOptions): AsyncGenerator<types.Row> {
    let pageState: string | undefined;
    do {
      const page = await this.#page(cql, params, options, pageState);
      yield* page.rows;
      pageState = page.pageState ?? undefined;
    } while (pageState !== undefined);
  }

  async #page(
    cql: string,
    params: Params,
    options: StatementOptions,
    pageState: string | undefined,
  ): Promise<types.ResultSet> {
    try {
      return await this.#client.execute(cql, params as unknown[], {
        ...this.#queryOptions(options),
        autoPage: false,
        ...(pageState === undefined ? {} : { pageState }),
      });
    } catch (error) {
      throw storeError(error);
    }
  }

  #queryOptions(options: StatementOptions) {
    return {
      prepare: true,
      isIdempotent: options.idempotent,
      consistency: options.serialRead ? this.#serialConsistency : this.#consistency,
      serialConsistency: this.#serialConsistency,
      ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
      ...(options.fetchSize === undefined ? {} : { fetchSize: options.fetchSize }),
    };
  }
}

const unavailableCodes = new Set<number>([
  types.responseErrorCodes.unavailableException,
  types.responseErrorCodes.overloaded,
  types.responseErrorCodes.isBootstrapping,
  types.responseErrorCodes.writeTimeout,
  types.responseErrorCodes.readTimeout,
  types.responseErrorCodes.readFailure,
  types.responseErrorCodes.writeFailure,
]);

/** Whether a driver error means "not stored / not answered now, try again". */
export function isUnavailable(error: unknown): boolean {
  if (
    error instanceof errors.NoHostAvailableError ||
    error instanceof errors.OperationTimedOutError ||
    error instanceof errors.BusyConnectionError
  ) {
    return true;
  }
  // A connection that closed with the request in flight: whether it was applied is unknown.
  if (error instanceof errors.DriverError && (error as { isSocketError?: boolean }).isSocketError) {
    return true;
  }
  return error instanceof errors.ResponseError && unavailableCodes.has(error.code);
}

function storeError(error: unknown): unknown {
  if (!isUnavailable(error)) return error;
  return new StoreUnavailableError(
    `Cassandra is unavailable: ${error instanceof Error ? error.message : String(error)}`,
    { cause: error },
  );
}
