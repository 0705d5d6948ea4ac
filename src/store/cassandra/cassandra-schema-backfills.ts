import { type Client, types } from "cassandra-driver";
import { mapConcurrently } from "../map-concurrently.js";

/**
 * Data a schema version needs copied from the tables before it, run by applyCassandraSchema
 * right after that version's CQL, under the schema lock, before the version is recorded. Each
 * is idempotent (it writes what is there again), so a run cut short is simply run again.
 */
export type SchemaBackfill = (client: Client, keyspace: string) => Promise<void>;

const quorum = { prepare: true, consistency: types.consistencies.localQuorum };

/**
 * Version 8: the markers of deleted_messages into deleted_messages_by_conversation, with the
 * time they have left. Markers are few (one per deleted message, ending with retention), so
 * one pass over the table is cheap beside a deployment.
 */
async function markersByConversation(client: Client, keyspace: string): Promise<void> {
  const select = `SELECT tenant, message_id, conversation_id, deleted_at, TTL(deleted_at) AS left
    FROM ${keyspace}.deleted_messages`;
  const insert = `INSERT INTO ${keyspace}.deleted_messages_by_conversation
    (tenant, conversation_id, message_id, deleted_at) VALUES (?, ?, ?, ?) USING TTL ?`;
  let pageState: string | undefined;
  do {
    const page = await client.execute(select, [], { ...quorum, fetchSize: 1_000, pageState });
    await mapConcurrently(page.rows, 64, (row) =>
      client.execute(
        insert,
        [
          row.get("tenant"),
          row.get("conversation_id"),
          row.get("message_id"),
          row.get("deleted_at"),
          (row.get("left") as number | null) ?? 0,
        ],
        quorum,
      ),
    );
    pageState = page.pageState ?? undefined;
  } while (pageState !== undefined);
}

export const schemaBackfills: ReadonlyMap<number, SchemaBackfill> = new Map([
  [8, markersByConversation],
]);
