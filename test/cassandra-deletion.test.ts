import { describe, expect, it } from "vitest";
import { serviceCaller } from "../src/domain/caller.js";
import { ReceiptService } from "../src/domain/receipt-service.js";
import { CassandraDeletionMarkers } from "../src/store/cassandra/cassandra-deletion-markers.js";
import { bucketMs } from "../src/store/cassandra/cassandra-messages.js";
import { CassandraOutbox } from "../src/store/cassandra/cassandra-outbox.js";
import { applyCassandraSchema, loadSchemaFiles } from "../src/store/cassandra/cassandra-schema.js";
import { CqlSession } from "../src/store/cassandra/cql-session.js";
import { longEncoderOf, WriteClock } from "../src/store/cassandra/cql-values.js";
import {
  cassandraStore,
  embeddedFeed,
  keyspace,
  newTenant,
  readAll,
  receiptRecordCount,
  seedGroup,
  useCassandraKeyspace,
} from "./support/cassandra-store-fixtures.js";
import { testReplication } from "./support/cassandra-test-keyspace.js";
import { expectReceiptError, users } from "./support/fixtures.js";

/** The Cassandra store's own deletion and retention rules: several instances, crashes, TTLs. */
useCassandraKeyspace();

describe("Cassandra store: deleting messages", () => {
  it("refuses a receipt sent through an instance that still remembers a message another deleted", async () => {
    const tenant = newTenant();
    const members = users("u", 4);
    const deleting = cassandraStore(keyspace.client);
    const remembering = cassandraStore(keyspace.client);
    const message = await seedGroup(deleting, tenant, members);
    // The second instance has the message in memory from an earlier call.
    expect((await remembering.getMessages(tenant, [message.messageId])).size).toBe(1);
    await deleting.deleteMessages(tenant, "g", [message.messageId], Date.now());

    const feed = embeddedFeed();
    const service = new ReceiptService({ store: remembering, feed });
    await expectReceiptError(
      service.sendReceipts(tenant, serviceCaller, {
        conversationId: "g",
        readerId: "u000001",
        messageIds: [message.messageId],
      }),
      "not_found",
      "message_ids[0]",
    );
    // Its rows were written, then taken back: nothing is left and nothing counts.
    expect(await receiptRecordCount(tenant, "g", members)).toBe(0);
    expect(await readAll(remembering, tenant, message)).toBe(0);
    expect(await remembering.hasRead(tenant, "u000001", [message.messageId])).toEqual(new Set());
    await service.announcer.close();
    await feed.close();
  });

  it("finds after the upgrade to schema 8 the markers written before it, with the time they had left", async () => {
    const tenant = newTenant();
    const members = users("u", 3);
    const remembering = cassandraStore(keyspace.client);
    const message = await seedGroup(remembering, tenant, members);
    // A deletion by an instance of schema 7: its marker by id only (the rows it went on to
    // remove do not matter here; this instance remembers the message).
    const ks = keyspace.keyspace;
    await keyspace.client.execute(
      `INSERT INTO ${ks}.deleted_messages (tenant, message_id, conversation_id, conversation_type,
        sender_id, sent_at, receiver_id, deleted_at) VALUES (?, ?, ?, 'group', ?, ?, '', ?)
        USING TTL 3600`,
      [
        tenant,
        message.messageId,
        "g",
        message.senderId,
        BigInt(message.sentAt),
        BigInt(Date.now()),
      ],
      { prepare: true },
    );
    // Version 8 and those after it applied again, as on the first start of the new version.
    await keyspace.client.execute(`DELETE FROM ${ks}.schema_version WHERE version IN (8, 9)`);
    expect(
      await applyCassandraSchema(keyspace.client, { keyspace: ks, replication: testReplication }),
    ).toBe(loadSchemaFiles().length);
    const copied = (
      await keyspace.client.execute(
        `SELECT message_id, TTL(deleted_at) AS left FROM ${ks}.deleted_messages_by_conversation
          WHERE tenant = ? AND conversation_id = 'g'`,
        [tenant],
        { prepare: true },
      )
    ).rows.map((row) => [row.get("message_id"), row.get("left") as number]);
    expect(copied).toEqual([[message.messageId, expect.any(Number)]]);
    expect(copied[0]?.[1]).toBeGreaterThan(3_500);
    expect(copied[0]?.[1]).toBeLessThanOrEqual(3_600);
    const [recorded] = await remembering.insertReceipts(tenant, "u000001", [
      { message, readAt: Date.now() },
    ]);
    expect(recorded).toMatchObject({ deleted: true, inserted: false });
    expect(await receiptRecordCount(tenant, "g", members)).toBe(0);
  });

  it("forgets a deleted message at once, also when a read of it was in flight", async () => {
    const tenant = newTenant();
    const store = cassandraStore(keyspace.client);
    const message = await seedGroup(store, tenant, users("u", 3));
    const other = cassandraStore(keyspace.client);
    // Reads of the message in flight on both sides of the deletion.
    const reads = [other.getMessages(tenant, [message.messageId])];
    const deleting = other.deleteMessages(tenant, "g", [message.messageId], Date.now());
    reads.push(other.getMessages(tenant, [message.messageId]));
    expect((await deleting).map((m) => m.messageId)).toEqual([message.messageId]);
    await Promise.all(reads);
    expect((await other.getMessages(tenant, [message.messageId])).size).toBe(0);
    expect(
      (await cassandraStore(keyspace.client).getMessages(tenant, [message.messageId])).size,
    ).toBe(0);
  });

  it("completes a deletion cut short after its marker, from the outbox, and announces it", async () => {
    const tenant = newTenant();
    const members = users("u", 5);
    const store = cassandraStore(keyspace.client);
    const message = await seedGroup(store, tenant, members);
    for (const reader of members.slice(1)) {
      await store.insertReceipts(tenant, reader, [{ message, readAt: Date.now() }]);
    }
    expect(await receiptRecordCount(tenant, "g", members)).toBe(4);
    // What a deletion wrote before its process died: the pending change, then the marker.
    const session = new CqlSession(keyspace.client, {
      consistency: "LOCAL_QUORUM",
      serialConsistency: "LOCAL_SERIAL",
    });
    const deletedAt = Date.now() - 10_000;
    const { conversationId, messageId, senderId } = message;
    await new CassandraOutbox(session, keyspace.keyspace).keep([
      { kind: "deletion", tenant, conversationId, messageId, senderId, deletedAt },
    ]);
    await new CassandraDeletionMarkers({
      session,
      keyspace: keyspace.keyspace,
      long: longEncoderOf(keyspace.client),
      writeClock: new WriteClock(Date.now),
      concurrency: 4,
      clock: Date.now,
    }).mark(tenant, [message], deletedAt);

    const feed = embeddedFeed();
    const sweeper = new ReceiptService({ store, feed, announce: { graceMs: 0 } });
    let logged = await feed.readAfter(tenant, "0", 10);
    for (let i = 0; i < 50 && logged.length === 0; i++) {
      await sweeper.announcer.sweep();
      logged = await feed.readAfter(tenant, "0", 10);
    }
    expect(logged.map((c) => c.change)).toMatchObject([
      { kind: "deletion", conversationId: "g", messages: [{ messageId }] },
    ]);
    expect(await receiptRecordCount(tenant, "g", members)).toBe(0);
    expect(await readAll(store, tenant, message)).toBe(0);
    expect((await store.getMessages(tenant, [messageId])).size).toBe(0);
    await sweeper.announcer.close();
    await feed.close();
  });
});

describe("Cassandra store: retention by TTL", () => {
  it("writes every row of a message and its receipts with the TTL left to its expiry", async () => {
    const tenant = newTenant();
    const store = cassandraStore(keyspace.client);
    const members = users("u", 3);
    await store.openMemberships(tenant, "g", members, 0);
    const expiresAt = Date.now() + 3_600_000;
    const message = {
      conversationId: "g",
      conversationType: "group" as const,
      messageId: `m-${tenant}`,
      senderId: "u000000",
      sentAt: Date.now(),
      receiverId: "",
      expiresAt,
    };
    await store.insertMessages(tenant, [message]);
    await store.insertReceipts(tenant, "u000001", [{ message, readAt: Date.now() }]);
    const ttl = async (cql: string, params: unknown[]) =>
      (await keyspace.client.execute(cql, params, { prepare: true })).first()?.get("t") as number;
    const ks = keyspace.keyspace;
    const ttls = [
      await ttl(
        `SELECT TTL(sender_id) AS t FROM ${ks}.messages WHERE tenant = ? AND message_id = ?`,
        [tenant, message.messageId],
      ),
      await ttl(
        `SELECT TTL(read_at) AS t FROM ${ks}.readers_by_message WHERE tenant = ? AND message_id = ?`,
        [tenant, message.messageId],
      ),
      await ttl(
        `SELECT TTL(read_at) AS t FROM ${ks}.receipts_by_reader
         WHERE tenant = ? AND conversation_id = ? AND reader_id = ?`,
        [tenant, "g", "u000001"],
      ),
      await ttl(
        `SELECT TTL(sender_id) AS t FROM ${ks}.messages_by_conversation
         WHERE tenant = ? AND conversation_id = ? AND bucket = ?`,
        [tenant, "g", longEncoderOf(keyspace.client)(Math.floor(message.sentAt / bucketMs))],
      ),
    ];
    for (const t of ttls) {
      expect(t).toBeGreaterThan(3_590);
      expect(t).toBeLessThanOrEqual(3_600);
    }
    // Read back by another instance, the message keeps its expiry (for its later receipts' TTL).
    const other = cassandraStore(keyspace.client);
    expect((await other.getMessages(tenant, [message.messageId])).get(message.messageId)).toEqual(
      message,
    );
  });
});
