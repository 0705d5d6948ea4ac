import { describe, expect, it } from "vitest";
import { type PendingChange, pendingChangeTime } from "../src/domain/model.js";
import { legacyShardOf } from "../src/store/cassandra/cassandra-legacy-outbox.js";
import { CassandraOutbox } from "../src/store/cassandra/cassandra-outbox.js";
import { CqlSession } from "../src/store/cassandra/cql-session.js";
import {
  cassandraStore,
  keyspace,
  newTenant,
  seedGroup,
  useCassandraKeyspace,
} from "./support/cassandra-store-fixtures.js";
import { users } from "./support/fixtures.js";

/** The outbox by writer (schema 9): who reads whose entries, and when. */
useCassandraKeyspace();

const session = () =>
  new CqlSession(keyspace.client, {
    consistency: "LOCAL_QUORUM",
    serialConsistency: "LOCAL_SERIAL",
  });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const receipt = (tenant: string, i: number): PendingChange => ({
  kind: "receipt",
  tenant,
  conversationId: "g",
  messageId: `m${i}`,
  readerId: "u000001",
  readAt: Date.now() - 10_000,
});
const ofTenant = (changes: readonly PendingChange[], tenant: string) =>
  changes.filter((c) => c.tenant === tenant);

describe("Cassandra outbox, by writer", () => {
  it("reads no partition of a writer that sweeps: its own sweeps hand its entries out from memory", async () => {
    const tenant = newTenant();
    const writer = cassandraStore(keyspace.client, { outboxWriterLapseMs: 10_000 });
    const other = cassandraStore(keyspace.client, { outboxWriterLapseMs: 10_000 });
    const message = await seedGroup(writer, tenant, users("u", 3));
    await writer.insertReceipts(tenant, "u000001", [{ message, readAt: Date.now() - 5_000 }]);
    await writer.insertReceipts(tenant, "u000002", [{ message, readAt: Date.now() - 5_000 }]);
    for (let i = 0; i < 3; i++) {
      // The writer sweeps (its heartbeat), the other finds nothing of it.
      expect(ofTenant(await writer.pendingChanges(Date.now(), 100), tenant)).toHaveLength(2);
      expect(ofTenant(await other.pendingChanges(Date.now(), 100), tenant)).toEqual([]);
      await sleep(1_100);
    }
  });

  it("hands a writer's entries to the others once its heartbeat lapses, until they are cleared", async () => {
    const tenant = newTenant();
    const writer = cassandraStore(keyspace.client, { outboxWriterLapseMs: 10_000 });
    const other = cassandraStore(keyspace.client, { outboxWriterLapseMs: 1_500 });
    const message = await seedGroup(writer, tenant, users("u", 4));
    for (const reader of ["u000001", "u000002", "u000003"]) {
      await writer.insertReceipts(tenant, reader, [{ message, readAt: Date.now() - 5_000 }]);
    }
    const mine = ofTenant(await writer.pendingChanges(Date.now(), 100), tenant);
    expect(mine).toHaveLength(3);
    await writer.clearPendingChanges(mine.slice(0, 1)); // one published before it died
    // Alive a moment ago: not yet the other's.
    expect(ofTenant(await other.pendingChanges(Date.now(), 100), tenant)).toEqual([]);
    await sleep(2_000); // no sweep of the writer since: it is taken for dead
    const taken = ofTenant(await other.pendingChanges(Date.now(), 100), tenant);
    expect(taken.map((c) => c.kind === "receipt" && c.readerId).sort()).toEqual([
      "u000002",
      "u000003",
    ]);
    await other.clearPendingChanges(taken);
    expect(ofTenant(await other.pendingChanges(Date.now(), 100), tenant)).toEqual([]);
    expect(
      ofTenant(await cassandraStore(keyspace.client).pendingChanges(Date.now(), 100), tenant),
    ).toEqual([]);
  });

  it("leaves its entries to the others, under a new name, past the entries it may hold in memory", async () => {
    const tenant = newTenant();
    const outbox = new CassandraOutbox(session(), keyspace.keyspace, {
      memoryEntries: 5,
      writerLapseMs: 0,
    });
    const first = outbox.writer;
    await outbox.keep([0, 1, 2, 3, 4].map((i) => receipt(tenant, i)));
    expect(outbox.writer).toBe(first);
    await outbox.keep([5, 6, 7].map((i) => receipt(tenant, i)));
    expect(outbox.writer).not.toBe(first);
    await sleep(5);
    // The first five come back from the name it left (taken for dead at once here), the rest
    // from memory: none is lost, and memory never held more than five.
    const pending = ofTenant(await outbox.pending(Date.now(), 100), tenant);
    expect(pending.map((c) => c.kind === "receipt" && c.messageId).sort()).toEqual(
      [0, 1, 2, 3, 4, 5, 6, 7].map((i) => `m${i}`),
    );
    await outbox.clear(pending);
    expect(ofTenant(await outbox.pending(Date.now(), 100), tenant)).toEqual([]);
  });

  it("a writer that keeps without sweeping takes a new name before anyone could stop reading it", async () => {
    const tenant = newTenant();
    let now = Date.now();
    const outbox = new CassandraOutbox(session(), keyspace.keyspace, { clock: () => now });
    await outbox.keep([receipt(tenant, 0)]);
    const first = outbox.writer;
    now += 20_000;
    await outbox.keep([receipt(tenant, 1)]);
    expect(outbox.writer).toBe(first);
    now += 20_000; // 40 s without a sweep: a dead writer is read 60 s past its heartbeat
    await outbox.keep([receipt(tenant, 2)]);
    expect(outbox.writer).not.toBe(first);
  });

  it("sweeps and clears what instances of schema 3 left in pending_changes", async () => {
    const tenant = newTenant();
    const change = receipt(tenant, 9);
    const ks = keyspace.keyspace;
    const row = [
      legacyShardOf(change),
      Math.floor(pendingChangeTime(change) / 30_000),
      tenant,
      "r\u0000m9\u0000u000001",
    ];
    await keyspace.client.execute(
      `INSERT INTO ${ks}.pending_changes (shard, bucket, tenant, change_key, payload) VALUES (?, ?, ?, ?, ?)`,
      [...row, JSON.stringify(change)],
      { prepare: true },
    );
    const outbox = new CassandraOutbox(session(), ks);
    const pending = ofTenant(await outbox.pending(Date.now(), 100), tenant);
    expect(pending).toEqual([change]);
    await outbox.clear(pending);
    const left = await keyspace.client.execute(
      `SELECT change_key FROM ${ks}.pending_changes WHERE shard = ? AND bucket = ? AND tenant = ?`,
      row.slice(0, 3),
      { prepare: true },
    );
    expect(left.rowLength).toBe(0);
  });
});
