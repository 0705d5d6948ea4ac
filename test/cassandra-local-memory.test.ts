import { type Client, types } from "cassandra-driver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TrackedMessage } from "../src/domain/model.js";
import {
  cassandraStore,
  groupMessage,
  keyspace,
  newTenant,
  readAll,
  seedGroup,
  useCassandraKeyspace,
} from "./support/cassandra-store-fixtures.js";
import { connectTestClient, RequestCounter } from "./support/cassandra-test-keyspace.js";
import { minutes, users } from "./support/fixtures.js";

/** What one process keeps in memory (messages, conversations, membership facts) and the requests it saves. */
useCassandraKeyspace();

describe("Cassandra store: what one process keeps in memory", () => {
  let counter: RequestCounter;
  let client: Client;

  beforeAll(() => {
    counter = new RequestCounter();
    client = connectTestClient({ requestTracker: counter });
  });

  afterAll(async () => {
    await client?.shutdown();
  });

  const sender = "u000000";
  const probe = [{ userId: sender, at: minutes(10) }];

  it("reads a tracked message from Cassandra once, and an untracked id every time", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    const message = await seedGroup(store, tenant, users("u", 3));
    expect((await store.getMessages(tenant, [message.messageId])).get(message.messageId)).toEqual(
      message,
    );
    counter.reset();
    const found = await store.getMessages(tenant, [message.messageId, "not-yet-tracked"]);
    expect([...found.values()]).toEqual([message]);
    expect(counter.count("messages")).toBe(1);
    expect(counter.queries.every((q) => q.includes("message_id = ?"))).toBe(true);
  });

  it("knows the messages it tracked itself without reading them back", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    const message = await seedGroup(store, tenant, users("u", 3));
    counter.reset();
    expect((await store.getMessages(tenant, [message.messageId])).get(message.messageId)).toEqual(
      message,
    );
    expect(counter.count("messages")).toBe(0);
  });

  it("shares one read of a message among calls that want it at once, but not a read that missed it", async () => {
    const tenant = newTenant();
    const message = await seedGroup(cassandraStore(keyspace.client), tenant, users("u", 3));
    const store = cassandraStore(client);
    const getAtOnce = (id: string) =>
      Promise.all(Array.from({ length: 20 }, () => store.getMessages(tenant, [id])));
    counter.reset();
    const found = await getAtOnce(message.messageId);
    expect(found.map((m) => m.get(message.messageId))).toEqual(found.map(() => message));
    expect(counter.count("messages")).toBe(1);
    counter.reset();
    const missing = await getAtOnce("not-yet-tracked");
    expect(missing.every((m) => m.size === 0)).toBe(true);
    // Each call that found only a missing answer in flight asked again itself.
    expect(counter.count("messages")).toBeGreaterThan(1);
  });

  it("reads a stored conversation from Cassandra once, and an unknown one every time", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    const c2c: TrackedMessage = {
      conversationId: "c",
      conversationType: "c2c",
      messageId: "m-c2c",
      senderId: "zoe",
      sentAt: minutes(1),
      receiverId: "amy",
    };
    await cassandraStore(keyspace.client).insertMessages(tenant, [c2c]);
    const expected = { conversationId: "c", type: "c2c", participants: ["amy", "zoe"] };
    expect(await store.getConversation(tenant, "c")).toEqual(expected);
    expect(await store.getConversation(tenant, "not-yet")).toBeUndefined();
    counter.reset();
    expect(await store.getConversation(tenant, "c")).toEqual(expected);
    expect(await store.getConversation(tenant, "not-yet")).toBeUndefined();
    expect(counter.count("conversations")).toBe(1);
  });

  it("keeps what was stored first when instances create one conversation differently at once", async () => {
    const tenant = newTenant();
    const stores = [cassandraStore(client), cassandraStore(keyspace.client)];
    const ids = Array.from({ length: 20 }, (_, i) => `race-${i}`);
    // Statements prepared beforehand, so that both instances' writes really meet.
    for (const [s, store] of stores.entries()) {
      await store.insertMessages(tenant, [groupMessage(`warm-${s}`, `warm-${s}`, "zoe", 1)]);
    }
    // Each instance learns the conversation from its own write's answer, not from a read.
    await Promise.all(
      stores.map((store, s) =>
        store.insertMessages(
          tenant,
          ids.map((id) => ({
            ...groupMessage(`${id}-${s}`, id, "zoe", minutes(1)),
            ...(s === 0 ? {} : { conversationType: "c2c" as const, receiverId: "amy" }),
          })),
        ),
      ),
    );
    const fresh = cassandraStore(keyspace.client, { localCacheEntries: 0 });
    for (const id of ids) {
      const stored = await fresh.getConversation(tenant, id);
      expect(stored).toBeDefined();
      for (const store of stores) expect(await store.getConversation(tenant, id)).toEqual(stored);
    }
  });

  it("answers audience sizes from memory with one read of the group's version", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    await seedGroup(store, tenant, users("u", 5));
    const probes = [...probe, { userId: "u000001", at: minutes(11) }];
    const expected = [
      { memberCount: 5, wasMember: true },
      { memberCount: 5, wasMember: true },
    ];
    expect(await store.membershipAt(tenant, "g", probes)).toEqual(expected);
    counter.reset();
    expect(await store.membershipAt(tenant, "g", probes)).toEqual(expected);
    expect(counter.count()).toBe(1);
    expect(counter.count("group_sizes")).toBe(1);
  });

  it("shares one read of the group's version among the calls of one turn, never with a later call", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    await seedGroup(store, tenant, users("u", 5));
    await store.membershipAt(tenant, "g", probe);
    counter.reset();
    const sameTurn = await Promise.all(
      Array.from({ length: 10 }, () => store.membershipAt(tenant, "g", probe)),
    );
    expect(sameTurn).toEqual(sameTurn.map(() => [{ memberCount: 5, wasMember: true }]));
    expect(counter.count("group_sizes")).toBe(1);
    counter.reset();
    const first = store.membershipAt(tenant, "g", probe);
    // The first call's read is sent once this turn's I/O is handled; a call after that reads anew.
    await new Promise((resolve) => setImmediate(resolve));
    const later = store.membershipAt(tenant, "g", probe);
    await Promise.all([first, later]);
    expect(counter.count("group_sizes")).toBe(2);
  });

  it("sees a change acknowledged by another instance in its next call", async () => {
    const tenant = newTenant();
    const mine = cassandraStore(client);
    const other = cassandraStore(keyspace.client);
    await seedGroup(other, tenant, users("u", 5));
    expect(await mine.membershipAt(tenant, "g", probe)).toEqual([
      { memberCount: 5, wasMember: true },
    ]);
    // Backdated: the sender left before its message, so it no longer counts itself.
    await other.closeMemberships(tenant, "g", [sender], minutes(5));
    expect(await mine.membershipAt(tenant, "g", probe)).toEqual([
      { memberCount: 4, wasMember: false },
    ]);
    await other.openMemberships(tenant, "g", ["late-joiner"], minutes(2));
    expect(await mine.membershipAt(tenant, "g", probe)).toEqual([
      { memberCount: 5, wasMember: false },
    ]);
  });

  it("reads through while a membership change holds the group's lock", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    await seedGroup(store, tenant, users("u", 5));
    expect(await store.membershipAt(tenant, "g", probe)).toEqual([
      { memberCount: 5, wasMember: true },
    ]);
    // What a change in progress looks like: the lock taken and one of its rows written.
    const run = (cql: string, params: unknown[]) =>
      keyspace.client.execute(cql, params, { prepare: true });
    await run(
      `UPDATE ${keyspace.keyspace}.group_sizes SET lock_op = ?, lock_since = ? WHERE tenant = ? AND group_id = ?`,
      [types.Uuid.random(), BigInt(Date.now()), tenant, "g"],
    );
    await run(
      `INSERT INTO ${keyspace.keyspace}.group_sizes (tenant, group_id, changed_at, members) VALUES (?, ?, ?, ?)`,
      [tenant, "g", BigInt(minutes(7)), 6],
    );
    expect(await store.membershipAt(tenant, "g", probe)).toEqual([
      { memberCount: 6, wasMember: true },
    ]);
  });

  it("records a call of 10 new receipts with one read, one batch and a write per message, no LWT", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    const first = await seedGroup(store, tenant, users("u", 3));
    const messages = [
      first,
      ...Array.from({ length: 9 }, (_, i) => groupMessage(`m${i}`, "g", sender, minutes(11 + i))),
    ];
    await store.insertMessages(tenant, messages.slice(1));
    const sendAll = (readAt: number) =>
      store.insertReceipts(
        tenant,
        "u000001",
        messages.map((message) => ({ message, readAt })),
      );
    counter.reset();
    const recorded = await sendAll(minutes(30));
    expect(recorded.map((r) => [r.inserted, r.readCount])).toEqual(messages.map(() => [true, 1]));
    expect(counter.requests(/^SELECT .* FROM \S+\.receipts_by_reader/s)).toBe(1);
    expect(counter.batchSizes(/^INSERT INTO \S+\.receipts_by_reader/)).toEqual([10]);
    expect(counter.requests(/^INSERT INTO \S+\.readers_by_message/)).toBe(10);
    expect(counter.queries.filter((q) => /\bIF\b/.test(q))).toEqual([]);
    // The deletion markers that a racing DeleteMessages may have written: one read for the
    // call's one conversation, not one per message.
    expect(counter.requests(/^SELECT .* FROM \S+\.deleted_messages\w*\s/s)).toBe(1);
    counter.reset();
    const again = await sendAll(minutes(31));
    expect(again.map((r) => [r.inserted, r.readCount])).toEqual(messages.map(() => [false, 1]));
    expect(counter.requests(/^INSERT INTO \S+\.receipts_by_reader/)).toBe(0);
  });

  it("sends the readers rows of one message that arrive together in shared batches", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client);
    const members = users("u", 61);
    const message = await seedGroup(store, tenant, members);
    counter.reset();
    const recorded = await Promise.all(
      members
        .slice(1)
        .map((reader) => store.insertReceipts(tenant, reader, [{ message, readAt: minutes(20) }])),
    );
    expect(recorded.flat().filter((r) => r.inserted)).toHaveLength(60);
    const writes = /^INSERT INTO \S+\.readers_by_message/;
    const batched = counter.batchSizes(writes);
    expect(batched.length).toBeGreaterThan(0);
    expect(counter.requests(writes)).toBeLessThan(60);
    expect(counter.requests(writes) - batched.length + batched.reduce((a, b) => a + b, 0)).toBe(60);
    expect(await readAll(store, tenant, message)).toBe(60);
  });

  it("keeps nothing in memory when told so", async () => {
    const tenant = newTenant();
    const store = cassandraStore(client, { localCacheEntries: 0 });
    const message = await seedGroup(store, tenant, users("u", 3));
    await store.getMessages(tenant, [message.messageId]);
    await store.membershipAt(tenant, "g", probe);
    counter.reset();
    await store.getMessages(tenant, [message.messageId]);
    await store.membershipAt(tenant, "g", probe);
    expect(counter.count("messages")).toBe(1);
    expect(counter.count("memberships")).toBe(1);
  });
});
