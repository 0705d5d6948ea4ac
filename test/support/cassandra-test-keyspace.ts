import { randomBytes } from "node:crypto";
import { type Client, tracker } from "cassandra-driver";
import { createCassandraClient } from "../../src/store/cassandra/cassandra-client.js";
import { applyCassandraSchema } from "../../src/store/cassandra/cassandra-schema.js";

export const cassandraContactPoints = (
  process.env.RECEIPTS_CASSANDRA_CONTACT_POINTS ?? "127.0.0.1:9042"
).split(",");
export const cassandraLocalDc = process.env.RECEIPTS_CASSANDRA_LOCAL_DC ?? "datacenter1";
export const testReplication = "{'class': 'SimpleStrategy', 'replication_factor': 1}";

/**
 * A fresh keyspace with the schema applied, so that test files never see each other's data;
 * on the shared node unless a cluster of the test's own is given.
 */
export async function createTestKeyspace(
  on: { readonly contactPoints: readonly string[]; readonly replication: string } = {
    contactPoints: cassandraContactPoints,
    replication: testReplication,
  },
): Promise<{
  readonly client: Client;
  readonly keyspace: string;
  drop(): Promise<void>;
}> {
  const keyspace = `receipts_test_${randomBytes(6).toString("hex")}`;
  const client = createCassandraClient({
    contactPoints: on.contactPoints,
    localDataCenter: cassandraLocalDc,
  });
  await applyCassandraSchema(client, { keyspace, replication: on.replication });
  return {
    client,
    keyspace,
    async drop() {
      await client.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`).catch(() => undefined);
      await client.shutdown();
    },
  };
}

export function connectTestClient(
  options: { requestTracker?: tracker.RequestTracker } = {},
): Client {
  return createCassandraClient({
    contactPoints: cassandraContactPoints,
    localDataCenter: cassandraLocalDc,
    ...options,
  });
}

/** The driver checks `instanceof` its RequestTracker class, which its typings declare as an interface. */
const RequestTrackerBase = (tracker as unknown as { RequestTracker: new () => object })
  .RequestTracker;

/** Counts the requests a Client sends, by the CQL they carry. */
export class RequestCounter extends RequestTrackerBase implements tracker.RequestTracker {
  readonly queries: string[] = [];
  /** The statements of each request: one, or a batch's. */
  readonly #requests: string[][] = [];

  onSuccess(_host: unknown, query: string | { query: string }[]): void {
    this.#record(query);
  }

  onError(_host: unknown, query: string | { query: string }[]): void {
    this.#record(query);
  }

  shutdown(): void {}

  /** Requests since the last reset that mention `table` (all when omitted). */
  count(table?: string): number {
    return table === undefined
      ? this.queries.length
      : this.queries.filter((q) => q.includes(`.${table} `) || q.includes(`.${table}\n`)).length;
  }

  /** Requests since the last reset with a statement that matches, a batch counting as one. */
  requests(matching: RegExp): number {
    return this.#requests.filter((statements) => statements.some((q) => matching.test(q))).length;
  }

  /** Rows per batch since the last reset, of batches whose statements match. */
  batchSizes(matching: RegExp): number[] {
    return this.#requests
      .filter((statements) => statements.length > 1 && statements.some((q) => matching.test(q)))
      .map((statements) => statements.length);
  }

  reset(): void {
    this.queries.length = 0;
    this.#requests.length = 0;
  }

  #record(query: string | { query: string }[]): void {
    const statements = typeof query === "string" ? [query] : query.map((q) => q.query);
    this.queries.push(...statements);
    this.#requests.push(statements);
  }
}
