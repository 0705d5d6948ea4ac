import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { ConversationType, TrackedMessageSchema } from "../gen/receipts/v1/receipts_pb.js";
import { serverWithGroup } from "./support/cassandra-service.js";
import { keyspace, useCassandraKeyspace } from "./support/cassandra-store-fixtures.js";
import { minutes } from "./support/fixtures.js";

/**
 * The tombstones the outbox's sweeps pass, through the service, in a keyspace of their own:
 * Cassandra's per-table histogram then counts this file's reads only.
 */
useCassandraKeyspace();

describe("the outbox's sweeps and their tombstones", () => {
  const ks = () => keyspace.keyspace;
  const warnedOf = async (baseUrl: string, table: string) => {
    const metrics = await (await fetch(`${baseUrl}/metrics`)).text();
    return Number(
      new RegExp(
        `receipts_cassandra_warnings_total\\{table="${ks()}\\.${table}",kind="tombstones"\\} (\\d+)`,
      ).exec(metrics)?.[1] ?? 0,
    );
  };
  /** The most tombstones a read of the table passed (Cassandra's own histogram, per table). */
  const tombstonesPerRead = async (table: string) =>
    (
      await keyspace.client.execute(
        "SELECT max FROM system_views.tombstones_per_read WHERE keyspace_name = ? AND table_name = ?",
        [ks(), table],
      )
    )
      .first()
      ?.get("max") as number;

  it("sweeps past none of the tombstones its own cleared entries leave", async () => {
    const { server, groupId, receipts } = await serverWithGroup(["alice", "bob"]);
    try {
      const ids = Array.from({ length: 1_100 }, (_, i) => `${groupId}-m${i}`);
      for (let i = 0; i < ids.length; i += 1_000) {
        await receipts.trackMessages({
          messages: ids.slice(i, i + 1_000).map((messageId) =>
            create(TrackedMessageSchema, {
              conversationId: groupId,
              conversationType: ConversationType.GROUP,
              messageId,
              senderId: "alice",
              sentAt: timestampFromMs(minutes(10)),
            }),
          ),
        });
      }
      // One reader's 1,100 entries, each cleared once published: schema 3 kept them in one
      // partition that every sweep read whole, 1,100 tombstones a read.
      for (let i = 0; i < ids.length; i += 100) {
        await receipts.sendReceipts({
          conversationId: groupId,
          readerId: "bob",
          messageIds: ids.slice(i, i + 100),
        });
      }
      await new Promise((resolve) => setTimeout(resolve, 4_000)); // sweeps, once a second
      for (const table of ["outbox_entries", "pending_changes"]) {
        expect(await warnedOf(server.baseUrl, table)).toBe(0);
        expect(await tombstonesPerRead(table)).toBeLessThan(1_000);
      }
    } finally {
      await server.stop();
    }
  });

  it("counts the tombstones a sweep passes, by table and kind", async () => {
    // After the test above, which counts on pending_changes having no tombstone yet.
    // What an instance of schema 3 left in its outbox: 1,100 entries in one partition, each
    // cleared once published (the warning is at 1,000), read by the first sweep of the new one.
    const bucket = Math.floor(Date.now() / 30_000);
    for (let i = 0; i < 1_100; i += 100) {
      const keys = Array.from({ length: 100 }, (_, j) => `r\u0000m${i + j}\u0000bob`);
      const write = (cql: string) =>
        keyspace.client.batch(
          keys.map((key) => ({ query: cql, params: [0, bucket, "t-legacy", key] })),
          { prepare: true, logged: false },
        );
      await write(
        `INSERT INTO ${ks()}.pending_changes (shard, bucket, tenant, change_key, payload) VALUES (?, ?, ?, ?, '{}')`,
      );
      await write(
        `DELETE FROM ${ks()}.pending_changes WHERE shard = ? AND bucket = ? AND tenant = ? AND change_key = ?`,
      );
    }
    const { server } = await serverWithGroup(["alice", "bob"]);
    try {
      const deadline = Date.now() + 20_000;
      while ((await warnedOf(server.baseUrl, "pending_changes")) === 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(await warnedOf(server.baseUrl, "pending_changes")).toBeGreaterThan(0);
    } finally {
      await server.stop();
    }
  });
});
