import type { DatabaseSync, StatementSync } from "node:sqlite";

/** Told of one changed row by the two columns that name what it belongs to. */
export type RowChanged = (tenant: string, key: string) => void;

/** What to watch: a table, the column that names the row's owner beside `tenant`. */
export interface WatchedTable {
  readonly table: string;
  readonly keyColumn: string;
  /** Only updates of these columns count; every update when absent. */
  readonly updateOf?: readonly string[];
}

/** One set of triggers per connection and name, however many stores share the connection. */
const watchers = new WeakMap<DatabaseSync, Map<string, Set<RowChanged>>>();

/**
 * Calls the returned listeners for every row of `tables` inserted, updated
 * (old and new row) or deleted through this connection, by any statement,
 * synchronously inside the write: temporary triggers call back into the
 * process through an application function. What keeps facts in memory
 * drops them there and then, so it can never answer from before a change.
 */
export function rowChanges(
  db: DatabaseSync,
  name: string,
  tables: readonly WatchedTable[],
): Set<RowChanged> {
  let byName = watchers.get(db);
  if (byName === undefined) {
    byName = new Map();
    watchers.set(db, byName);
  }
  const known = byName.get(name);
  if (known !== undefined) return known;
  const listeners = new Set<RowChanged>();
  byName.set(name, listeners);
  const fn = `receipts_${name}_changed`;
  db.function(fn, (tenant, key) => {
    for (const listener of listeners) listener(String(tenant), String(key));
    return null;
  });
  for (const { table, keyColumn, updateOf } of tables) {
    const update = updateOf === undefined ? "UPDATE" : `UPDATE OF ${updateOf.join(", ")}`;
    for (const [event, row] of [
      ["INSERT", "NEW"],
      [update, "OLD"],
      [update, "NEW"],
      ["DELETE", "OLD"],
    ] as const) {
      db.exec(
        `CREATE TEMP TRIGGER IF NOT EXISTS ${name}_${table}_${event.split(" ")[0]}_${row}
         AFTER ${event} ON main.${table}
         BEGIN SELECT ${fn}(${row}.tenant, ${row}.${keyColumn}); END`,
      );
    }
  }
  return listeners;
}

/**
 * Another connection's commits to the database file (`PRAGMA data_version`, which this
 * connection's own commits leave alone): a second process on the same file, which the
 * triggers do not see. One per connection, shared by every memory on it: `look()` drops them
 * all when the version moved.
 *
 * A look holds until a request arrives (`lookAgainFromNow`, called by the server before
 * anything of the request runs) or the event loop turns (an immediate), whichever comes first.
 * That is exact for requests: whatever a client saw committed elsewhere before it sent a request
 * was committed before the request arrived, so before any look the request's reads reuse.
 * Reads of no request (timers) see other processes' commits at most one turn late. A
 * GetReceipts reads the version once rather than once per memory, and calls that arrived
 * together share one read.
 */
export class OtherConnectionsCommits {
  readonly #dataVersion: StatementSync;
  readonly #onCommit = new Set<() => void>();
  #seen: unknown;
  #lookedIn = -1;

  private constructor(db: DatabaseSync) {
    this.#dataVersion = db.prepare("PRAGMA data_version");
    this.#seen = this.#read();
  }

  /** The connection's one instance. */
  static of(db: DatabaseSync): OtherConnectionsCommits {
    let commits = otherCommitsByConnection.get(db);
    if (commits === undefined) {
      commits = new OtherConnectionsCommits(db);
      otherCommitsByConnection.set(db, commits);
    }
    return commits;
  }

  /** Calls `drop` whenever `look()` finds that another connection committed. */
  onCommit(drop: () => void): void {
    this.#onCommit.add(drop);
  }

  /** Call before answering from memory. */
  look(): void {
    if (this.#lookedIn === looks.generation) return;
    this.#lookedIn = looks.generation;
    if (!looks.endOfTurnPending) {
      looks.endOfTurnPending = true;
      setImmediate(endTurn).unref();
    }
    const version = this.#read();
    if (version === this.#seen) return;
    this.#seen = version;
    for (const drop of this.#onCommit) drop();
  }

  #read(): unknown {
    return (this.#dataVersion.get() as { data_version: number }).data_version;
  }
}

const otherCommitsByConnection = new WeakMap<DatabaseSync, OtherConnectionsCommits>();
/** Looks made in an older generation are forgotten. */
const looks = { generation: 0, endOfTurnPending: false };
const endTurn = () => {
  looks.endOfTurnPending = false;
  looks.generation += 1;
};

/**
 * What is read from now on sees every commit other connections made until now: the server
 * calls it as each request arrives.
 */
export function lookAgainFromNow(): void {
  looks.generation += 1;
}

/** The key a memory of this connection keeps a row's facts under: the tenant and the row's id. */
export const memoryKey = (tenant: string, id: string) => `${tenant}\u0000${id}`;

/**
 * Keeps a memory of rows exact: a row of `tables` changed by any statement on this connection
 * drops its key (`memoryKey` of the tenant and the key column) there and then; another
 * connection's commit drops everything at the next look. Returns that look, to call before
 * each use.
 */
export function keepExact(
  db: DatabaseSync,
  name: string,
  tables: readonly WatchedTable[],
  memory: { delete(key: string): unknown; clear(): void },
): OtherConnectionsCommits {
  rowChanges(db, name, tables).add((tenant, key) => memory.delete(memoryKey(tenant, key)));
  const otherCommits = OtherConnectionsCommits.of(db);
  otherCommits.onCommit(() => memory.clear());
  return otherCommits;
}
