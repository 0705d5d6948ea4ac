import { types } from "cassandra-driver";
import { describe, expect, it } from "vitest";
import { serviceCaller } from "../src/domain/caller.js";
import { StoreUnavailableError } from "../src/domain/errors.js";
import { MembershipService } from "../src/domain/membership-service.js";
import { ReceiptService } from "../src/domain/receipt-service.js";
import { createCassandraClient } from "../src/store/cassandra/cassandra-client.js";
import {
  cassandraStore,
  embeddedFeed,
  groupMessage,
  keyspace,
  newTenant,
  readAll,
  seedGroup,
  useCassandraKeyspace,
} from "./support/cassandra-store-fixtures.js";
import { cassandraLocalDc } from "./support/cassandra-test-keyspace.js";
import { minutes, users } from "./support/fixtures.js";
import { TcpProxy } from "./support/tcp-proxy.js";

/** The Cassandra store under failures: Cassandra away, receipts cut short, group changes crashed half way. */
useCassandraKeyspace();

describe("Cassandra store: failures and recovery", () => {
  it("fails writes with StoreUnavailableError when Cassandra cannot be reached", async () => {
    const dead = createCassandraClient({
      contactPoints: ["127.0.0.1:1"],
      localDataCenter: cassandraLocalDc,
    });
    const store = cassandraStore(dead);
    const tenant = newTenant();
    const message = groupMessage("m1", "g", "alice", minutes(10));
    try {
      for (const call of [
        () => store.insertMessages(tenant, [message]),
        () => store.insertReceipts(tenant, "bob", [{ message, readAt: minutes(11) }]),
        () => store.openMemberships(tenant, "g", ["bob"], minutes(0)),
        () => store.advanceHorizon(tenant, "g", "bob", minutes(20), minutes(20)),
        () => store.readCounts(tenant, [message]),
        () => store.ping(),
      ]) {
        await expect(call()).rejects.toBeInstanceOf(StoreUnavailableError);
      }
    } finally {
      await dead.shutdown();
    }
  });

  it("fails with StoreUnavailableError while Cassandra is away; the retry afterwards counts once", async () => {
    const proxy = await TcpProxy.start("127.0.0.1", 9042);
    const client = createCassandraClient({
      contactPoints: [proxy.address],
      localDataCenter: cassandraLocalDc,
      reconnectDelayMs: 50,
      readTimeoutMs: 3_000,
    });
    const tenant = newTenant();
    const store = cassandraStore(client);
    const receipts = new ReceiptService({
      store,
      feed: embeddedFeed(),
    });
    const membership = new MembershipService({ store });
    try {
      await membership.addMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: users("u", 4),
        joinedAt: minutes(0),
      });
      await receipts.trackMessages(tenant, serviceCaller, [
        { ...groupMessage("m1", "g", "u000000", minutes(10)), conversationType: "group" },
      ]);

      proxy.cut();
      await expect(
        receipts.sendReceipts(tenant, serviceCaller, {
          conversationId: "g",
          readerId: "u000001",
          messageIds: ["m1"],
        }),
      ).rejects.toBeInstanceOf(StoreUnavailableError);
      proxy.restore();

      let after: Awaited<ReturnType<typeof receipts.getReceipts>> | undefined;
      for (let i = 0; i < 100 && after === undefined; i++) {
        after = await receipts
          .getReceipts(tenant, serviceCaller, { conversationId: "g", messageIds: ["m1"] })
          .catch(async () => {
            await new Promise((resolve) => setTimeout(resolve, 50));
            return undefined;
          });
      }
      expect(after?.[0]).toMatchObject({ readCount: 0, unreadCount: 3 });
      // The client retries: the receipt counts once.
      const [sent] = await receipts.sendReceipts(tenant, serviceCaller, {
        conversationId: "g",
        readerId: "u000001",
        messageIds: ["m1"],
      });
      expect(sent).toMatchObject({ readCount: 1, unreadCount: 2 });
    } finally {
      await client.shutdown();
      await proxy.close();
    }
  });

  it("completes a receipt whose first attempt stopped right after its record", async () => {
    const tenant = newTenant();
    const store = cassandraStore(keyspace.client);
    const message = await seedGroup(store, tenant, users("u", 3));
    // What a crash between the record and the readers row leaves behind.
    await keyspace.client.execute(
      `INSERT INTO ${keyspace.keyspace}.receipts_by_reader
         (tenant, conversation_id, reader_id, sent_at, message_id, read_at, write_ts)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
      [
        tenant,
        "g",
        "u000001",
        BigInt(message.sentAt),
        message.messageId,
        BigInt(minutes(11)),
        BigInt(Date.now() * 1000),
      ],
      { prepare: true },
    );
    expect(await readAll(store, tenant, message)).toBe(0);
    const [retried] = await store.insertReceipts(tenant, "u000001", [
      { message, readAt: minutes(15) },
    ]);
    expect(retried).toMatchObject({ inserted: false, readCount: 1 });
    expect(await store.listReaders(tenant, message, undefined, 10)).toEqual([
      { userId: "u000001", readAt: minutes(11) },
    ]);
    const [again] = await store.insertReceipts(tenant, "u000001", [
      { message, readAt: minutes(16) },
    ]);
    expect(again).toMatchObject({ inserted: false, readCount: 1 });
  });

  it("leaves a receipt recorded by schema version 1 as it was", async () => {
    const tenant = newTenant();
    const store = cassandraStore(keyspace.client);
    const message = await seedGroup(store, tenant, users("u", 3));
    // Version 1 wrote the record without a read time, in one logged batch with the readers row.
    const ts = BigInt(Date.now() * 1000);
    await keyspace.client.batch(
      [
        {
          query: `INSERT INTO ${keyspace.keyspace}.receipts_by_reader
            (tenant, conversation_id, reader_id, sent_at, message_id, write_ts) VALUES (?, ?, ?, ?, ?, ?)`,
          params: [tenant, "g", "u000001", BigInt(message.sentAt), message.messageId, ts],
        },
        {
          query: `INSERT INTO ${keyspace.keyspace}.readers_by_message (tenant, message_id, reader_id, read_at)
            VALUES (?, ?, ?, ?)`,
          params: [tenant, message.messageId, "u000001", BigInt(minutes(11))],
        },
      ],
      { prepare: true, logged: true },
    );
    const [recorded] = await store.insertReceipts(tenant, "u000001", [
      { message, readAt: minutes(15) },
    ]);
    expect(recorded).toMatchObject({ inserted: false, readCount: 1 });
    expect(await store.listReaders(tenant, message, undefined, 10)).toEqual([
      { userId: "u000001", readAt: minutes(11) },
    ]);
  });

  it("completes a membership change that crashed half way, and fences off one without a plan", async () => {
    const tenant = newTenant();
    const store = cassandraStore(keyspace.client, { membershipLockLeaseMs: 1_000 });
    await store.openMemberships(tenant, "g", ["a", "b", "c"], minutes(0));
    const ks = keyspace.keyspace;
    const run = (cql: string, params: unknown[]) =>
      keyspace.client.execute(cql, params, { prepare: true });

    // A change that wrote its plan and one of its two rows, then died holding the lock.
    const crashed = types.Uuid.random();
    const ts = Date.now() * 1000;
    const plan = {
      kind: "open",
      ts,
      at: minutes(5),
      users: [
        ["d", minutes(5)],
        ["e", minutes(5)],
      ],
      sizes: [[minutes(5), 5]],
    };
    await run(
      `UPDATE ${ks}.group_sizes SET lock_op = ?, lock_since = ? WHERE tenant = ? AND group_id = ? IF lock_op = null`,
      [crashed, BigInt(Date.now() - 60_000), tenant, "g"],
    );
    await run(
      `INSERT INTO ${ks}.membership_changes (tenant, group_id, op_id, aborted, plan) VALUES (?, ?, ?, false, ?)`,
      [tenant, "g", crashed, JSON.stringify(plan)],
    );
    await run(
      `INSERT INTO ${ks}.memberships (tenant, group_id, user_id, joined_at) VALUES (?, ?, ?, ?) USING TIMESTAMP ${ts}`,
      [tenant, "g", "d", BigInt(minutes(5))],
    );
    expect(await store.memberCountAt(tenant, "g", minutes(6))).toBe(5);
    expect(await store.wasMemberAt(tenant, "g", "e", [minutes(6)])).toEqual([true]);

    // A change that died before writing its plan: it is fenced off and the lock freed.
    const planless = types.Uuid.random();
    await run(
      `UPDATE ${ks}.group_sizes SET lock_op = ?, lock_since = ? WHERE tenant = ? AND group_id = ? IF lock_op = null`,
      [planless, BigInt(Date.now() - 60_000), tenant, "g"],
    );
    const started = Date.now();
    await store.openMemberships(tenant, "g", ["f"], minutes(7));
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await store.memberCountAt(tenant, "g", minutes(8))).toBe(6);
    const fence = await run(
      `SELECT aborted FROM ${ks}.membership_changes WHERE tenant = ? AND group_id = ? AND op_id = ?`,
      [tenant, "g", planless],
    );
    expect(fence.first()?.get("aborted")).toBe(true);
  });

  it("completes a user's erasure from a group that crashed half way, from its plan", async () => {
    const tenant = newTenant();
    const store = cassandraStore(keyspace.client, { membershipLockLeaseMs: 1_000 });
    await store.openMemberships(tenant, "g", ["a", "b", "u"], minutes(0));
    await store.openMemberships(tenant, "g", ["c"], minutes(10));
    const ks = keyspace.keyspace;
    const run = (cql: string, params: unknown[]) =>
      keyspace.client.execute(cql, params, { prepare: true });
    // The erasure of u wrote its plan and one of its three rows, then died holding the lock.
    const crashed = types.Uuid.random();
    const ts = Date.now() * 1000 + 1_000;
    const plan = {
      kind: "erase",
      ts,
      at: minutes(0),
      users: [["u", minutes(0)]],
      sizes: [
        [minutes(0), 2],
        [minutes(10), 3],
      ],
    };
    await run(
      `UPDATE ${ks}.group_sizes SET lock_op = ?, lock_since = ? WHERE tenant = ? AND group_id = ? IF lock_op = null`,
      [crashed, BigInt(Date.now() - 60_000), tenant, "g"],
    );
    await run(
      `INSERT INTO ${ks}.membership_changes (tenant, group_id, op_id, aborted, plan) VALUES (?, ?, ?, false, ?)`,
      [tenant, "g", crashed, JSON.stringify(plan)],
    );
    await run(
      `INSERT INTO ${ks}.group_sizes (tenant, group_id, changed_at, members) VALUES (?, ?, ?, ?) USING TIMESTAMP ${ts}`,
      [tenant, "g", BigInt(minutes(0)), 2],
    );
    // The next reader of the count finds the lock stale and completes the erasure.
    expect(await store.memberCountAt(tenant, "g", minutes(11))).toBe(3);
    expect(await store.memberCountAt(tenant, "g", minutes(5))).toBe(2);
    expect(await store.wasMemberAt(tenant, "g", "u", [minutes(5), minutes(11)])).toEqual([
      false,
      false,
    ]);
    // The erasure's own retry then finds nothing more of u in the group.
    expect(await store.eraseMembershipsOf(tenant, "u", undefined, 100)).toEqual({
      removed: 0,
      cursor: undefined,
    });
  });

  it("keeps the member count exact under backdated and concurrent changes", async () => {
    const tenant = newTenant();
    const store = cassandraStore(keyspace.client);
    await store.openMemberships(tenant, "g", users("a", 10), minutes(10));
    await store.openMemberships(tenant, "g", users("b", 5), minutes(20));
    // Backdated: joins before the other changes, leaves between them.
    await store.openMemberships(tenant, "g", users("c", 3), minutes(5));
    await store.closeMemberships(tenant, "g", users("a", 4), minutes(15));
    // Concurrent changes of one group are serialised by its lock.
    await Promise.all(
      users("d", 8).map((u, i) => store.openMemberships(tenant, "g", [u], minutes(30 + i))),
    );
    const expected: [number, number][] = [
      [minutes(4), 0],
      [minutes(5), 3],
      [minutes(10), 13],
      [minutes(15), 9],
      [minutes(20), 14],
      [minutes(29), 14],
      [minutes(37), 22],
    ];
    for (const [at, count] of expected)
      expect(await store.memberCountAt(tenant, "g", at)).toBe(count);
  });
});
