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
 * Whether another connection committed to the database file since the last
 * look (`PRAGMA data_version`, which this connection's own commits leave
 * alone): a second process on the same file, which the triggers do not see.
 */
export class OtherConnectionsCommits {
  readonly #dataVersion: StatementSync;
  #seen: unknown;

  constructor(db: DatabaseSync) {
    this.#dataVersion = db.prepare("PRAGMA data_version");
    this.#seen = this.#read();
  }

  sinceLastLook(): boolean {
    const version = this.#read();
    if (version === this.#seen) return false;
    this.#seen = version;
    return true;
  }

  #read(): unknown {
    return (this.#dataVersion.get() as { data_version: number }).data_version;
  }
}
