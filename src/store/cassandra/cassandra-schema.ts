import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { type Client, types } from "cassandra-driver";
import { isValidKeyspace } from "../../config.js";
import { StoreUnavailableError } from "../../domain/errors.js";
import { schemaBackfills } from "./cassandra-schema-backfills.js";
import { isUnavailable } from "./cql-session.js";

export interface SchemaOptions {
  readonly keyspace: string;
  /** A CQL replication map, e.g. {'class': 'NetworkTopologyStrategy', 'datacenter1': 3}. */
  readonly replication: string;
  /** How long to wait for another process that is migrating the same keyspace. */
  readonly lockWaitMs?: number;
}

export interface SchemaFile {
  readonly version: number;
  readonly name: string;
  readonly statements: readonly string[];
}

const fileNamePattern = /^(\d{3})_([a-z0-9_]+)\.cql$/;
/** Version 0 of schema_version is the migration lock, never a schema version. */
const lockVersion = 0;

/**
 * Creates the keyspace if needed and applies the versioned CQL files in
 * src/store/cassandra/schema that schema_version does not list yet, in order, each followed
 * by its backfill if it has one (cassandra-schema-backfills.ts).
 * Every statement is idempotent, so a run cut short is simply run again; an
 * LWT lock row keeps two starting processes from issuing DDL at once.
 * Returns the schema version now in place.
 */
export async function applyCassandraSchema(
  client: Client,
  options: SchemaOptions,
): Promise<number> {
  const { keyspace } = options;
  if (!isValidKeyspace(keyspace)) throw new Error(`invalid keyspace name: ${keyspace}`);
  const files = loadSchemaFiles();
  try {
    await client.execute(
      `CREATE KEYSPACE IF NOT EXISTS ${keyspace} WITH replication = ${options.replication}`,
    );
    await client.execute(
      `CREATE TABLE IF NOT EXISTS ${keyspace}.schema_version (
         version int PRIMARY KEY, name text, applied_at timestamp, owner uuid)`,
    );
    const latest = files.at(-1)?.version ?? 0;
    if ((await appliedVersions(client, keyspace)).has(latest)) return latest;

    const owner = types.Uuid.random();
    await acquireLock(client, keyspace, owner, options.lockWaitMs ?? 120_000);
    try {
      const applied = await appliedVersions(client, keyspace);
      for (const file of files) {
        if (applied.has(file.version)) continue;
        for (const statement of file.statements) {
          await client.execute(statement.replaceAll("{keyspace}", keyspace));
        }
        await schemaBackfills.get(file.version)?.(client, keyspace);
        await client.execute(
          `INSERT INTO ${keyspace}.schema_version (version, name, applied_at) VALUES (?, ?, ?)`,
          [file.version, file.name, new Date()],
          { prepare: true, consistency: types.consistencies.localQuorum },
        );
      }
    } finally {
      await client.execute(
        `DELETE FROM ${keyspace}.schema_version WHERE version = ? IF owner = ?`,
        [lockVersion, owner],
        { prepare: true, serialConsistency: types.consistencies.localSerial },
      );
    }
    return latest;
  } catch (error) {
    if (isUnavailable(error)) {
      throw new StoreUnavailableError(`Cassandra is unavailable while applying the schema`, {
        cause: error,
      });
    }
    throw error;
  }
}

async function appliedVersions(client: Client, keyspace: string): Promise<Set<number>> {
  const result = await client.execute(`SELECT version FROM ${keyspace}.schema_version`, [], {
    prepare: true,
    consistency: types.consistencies.localQuorum,
  });
  return new Set(
    result.rows.map((row) => row.get("version") as number).filter((v) => v !== lockVersion),
  );
}

async function acquireLock(
  client: Client,
  keyspace: string,
  owner: types.Uuid,
  waitMs: number,
): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    // The TTL frees the lock of a process that died while migrating.
    const result = await client.execute(
      `INSERT INTO ${keyspace}.schema_version (version, name, owner) VALUES (?, 'lock', ?)
       IF NOT EXISTS USING TTL 300`,
      [lockVersion, owner],
      { prepare: true, serialConsistency: types.consistencies.localSerial },
    );
    if (result.wasApplied() || String(result.first()?.get("owner")) === String(owner)) return;
    if (Date.now() > deadline) {
      throw new StoreUnavailableError(`another process holds the schema lock of ${keyspace}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** The schema files, in version order, found beside this module or in the source tree. */
export function loadSchemaFiles(): SchemaFile[] {
  const directory = schemaDirectory();
  const files = readdirSync(directory)
    .flatMap((name) => {
      const match = fileNamePattern.exec(name);
      return match === null
        ? []
        : [{ version: Number(match[1]), name, path: join(directory, name) }];
    })
    .sort((a, b) => a.version - b.version);
  files.forEach((file, i) => {
    if (file.version !== i + 1)
      throw new Error(`schema file versions must be 1, 2, 3…: ${file.name}`);
  });
  return files.map((file) => ({
    version: file.version,
    name: file.name,
    statements: splitStatements(readFileSync(file.path, "utf8")),
  }));
}

/**
 * tsc does not copy .cql files: a build under dist/ reads them from the
 * source tree it was built from (src/ ships with the image).
 */
function schemaDirectory(): string {
  const beside = fileURLToPath(new URL("./schema/", import.meta.url));
  const candidates = [beside];
  // dist/src/… (npm run build) or dist/test-builds/<name>/src/… (tests that build the service).
  const built = new RegExp(
    `\\${sep}dist\\${sep}(?:test-builds\\${sep}[^\\${sep}]+\\${sep})?src\\${sep}`,
  );
  if (built.test(beside)) candidates.push(beside.replace(built, `${sep}src${sep}`));
  const found = candidates.find((dir) => existsSync(dir));
  if (found === undefined)
    throw new Error(`Cassandra schema files not found in ${candidates.join(" or ")}`);
  return found;
}

function splitStatements(text: string): string[] {
  return text
    .split("\n")
    .filter((line) => !line.trimStart().startsWith("--"))
    .join("\n")
    .split(";")
    .map((statement) => statement.trim())
    .filter((statement) => statement.length > 0);
}
