import type { Client } from "cassandra-driver";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccessPolicy } from "../src/domain/access-policy.js";
import { serviceCaller } from "../src/domain/caller.js";
import { MembershipService } from "../src/domain/membership-service.js";
import type { ReadMember, TrackedMessage } from "../src/domain/model.js";
import { ReceiptService } from "../src/domain/receipt-service.js";
import { defaultTenantSettings } from "../src/domain/tenant-settings.js";
import type { CassandraReceiptStore } from "../src/store/cassandra/cassandra-receipt-store.js";
import { connectRedis } from "../src/store/redis/redis-connection.js";
import { RedisReadCountCache } from "../src/store/redis/redis-read-count-cache.js";
import {
  cassandraStore,
  embeddedFeed,
  groupMessage,
  newTenant,
  sharedPrefix,
  sharedRedisUrl,
  useCassandraKeyspace,
} from "./support/cassandra-store-fixtures.js";
import { connectTestClient, RequestCounter } from "./support/cassandra-test-keyspace.js";
import { minutes, users } from "./support/fixtures.js";

/** A group of 100,000 members: requests per call stay those of a small group. */
useCassandraKeyspace();

describe("a group of 100,000 members on Cassandra", () => {
  const memberCount = 100_000;
  const readerCount = 1_000;
  let tenant: string;
  let counter: RequestCounter;
  let client: Client;
  let redis: Redis;
  let cache: RedisReadCountCache;
  let store: CassandraReceiptStore;
  let receipts: ReceiptService;
  const members = users("u", memberCount);
  const timings: Record<string, number> = {};

  const timed = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await work();
    } finally {
      timings[name] = Math.round(performance.now() - started);
    }
  };

  beforeAll(async () => {
    tenant = newTenant();
    counter = new RequestCounter();
    client = connectTestClient({ requestTracker: counter });
    redis = connectRedis(sharedRedisUrl);
    cache = new RedisReadCountCache(redis, { keyPrefix: sharedPrefix, ttlMs: 60_000 });
    store = cassandraStore(client, { cache });
    receipts = new ReceiptService({
      store,
      feed: embeddedFeed(),
      // Member lists of any group: this test pages through the whole 100,000-member one.
      policy: new AccessPolicy({
        store,
        settingsOf: () => ({ ...defaultTenantSettings, maxGroupSizeForMemberLists: Infinity }),
      }),
    });
    const membership = new MembershipService({ store });
    await timed("add 100,000 members (100 calls)", async () => {
      for (let i = 0; i < memberCount; i += 1_000) {
        await membership.addMembers(tenant, serviceCaller, {
          groupId: "big",
          userIds: members.slice(i, i + 1_000),
          joinedAt: minutes(0),
        });
      }
    });
    await membership.addMembers(tenant, serviceCaller, {
      groupId: "small",
      userIds: users("s", 10),
      joinedAt: minutes(0),
    });
  }, 240_000);

  afterAll(async () => {
    console.info("100,000-member group timings (ms):", timings);
    await cache?.close();
    redis?.disconnect();
    await client?.shutdown();
  });

  it("tracks a message with the same requests as in a group of 10", async () => {
    counter.reset();
    await timed("track in 10-member group", () =>
      receipts.trackMessages(tenant, serviceCaller, [
        { ...groupMessage("small-1", "small", "s000000", minutes(10)) },
      ]),
    );
    const small = counter.count();
    counter.reset();
    await timed("track in 100,000-member group", () =>
      receipts.trackMessages(tenant, serviceCaller, [
        { ...groupMessage("big-1", "big", "u000000", minutes(10)) },
      ]),
    );
    expect(counter.count()).toBe(small);
    expect(counter.count("memberships")).toBe(0);
  });

  it("counts the audience with one read of the group's size", async () => {
    counter.reset();
    const [receipt] = await timed("GetReceipts, cold", () =>
      receipts.getReceipts(tenant, serviceCaller, { conversationId: "big", messageIds: ["big-1"] }),
    );
    expect(receipt).toMatchObject({ readCount: 0, unreadCount: memberCount - 1 });
    // The group's version, then its size at sent_at; and the sender's own intervals.
    expect(counter.count("group_sizes")).toBe(2);
    expect(counter.count("memberships")).toBe(1);
    counter.reset();
    const [again] = await timed("GetReceipts, hot", () =>
      receipts.getReceipts(tenant, serviceCaller, { conversationId: "big", messageIds: ["big-1"] }),
    );
    expect(again).toEqual(receipt);
    // Remembered at the group's version: only the version is read again.
    expect(counter.count("group_sizes")).toBe(1);
    expect(counter.count("memberships")).toBe(0);
  });

  it("pages READ and UNREAD members both ways, each member exactly once", async () => {
    const readers = members.filter((_, i) => i % 100 === 7); // 1,000 readers spread over the ids
    expect(readers).toHaveLength(readerCount);
    await timed("1,000 readers send receipts", async () => {
      for (let i = 0; i < readers.length; i += 50) {
        await Promise.all(
          readers.slice(i, i + 50).map((readerId) =>
            receipts.sendReceipts(tenant, serviceCaller, {
              conversationId: "big",
              readerId,
              messageIds: ["big-1"],
            }),
          ),
        );
      }
    });
    const [receipt] = await receipts.getReceipts(tenant, serviceCaller, {
      conversationId: "big",
      messageIds: ["big-1"],
    });
    expect(receipt).toMatchObject({
      readCount: readerCount,
      unreadCount: memberCount - 1 - readerCount,
    });

    const message = (await store.getMessages(tenant, ["big-1"])).get("big-1") as TrackedMessage;
    await redis.del(`${sharedPrefix}rc:{${encodeURIComponent(tenant)}/big-1}:set`);
    counter.reset();
    const cold = await timed("count 1,000 readers, cold (rebuilt from Cassandra)", () =>
      store.readCounts(tenant, [message]),
    );
    expect(counter.count("readers_by_message")).toBeGreaterThan(0);
    counter.reset();
    const hot = await timed("count 1,000 readers, hot (Redis)", () =>
      store.readCounts(tenant, [message]),
    );
    expect(counter.count()).toBe(0);
    expect([cold.get("big-1"), hot.get("big-1")]).toEqual([readerCount, readerCount]);

    const listAll = async (filter: "read" | "unread", pageSize: number) => {
      const all: ReadMember[] = [];
      let pageToken = "";
      do {
        const page = await receipts.listReadMembers(tenant, serviceCaller, {
          conversationId: "big",
          messageId: "big-1",
          filter,
          pageSize,
          pageToken,
        });
        all.push(...page.items);
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      return all.map((m) => m.userId);
    };
    const read = await timed("list READ (pages of 300)", () => listAll("read", 300));
    const unread = await timed("list UNREAD (pages of 1,000)", () => listAll("unread", 1_000));
    expect(read).toEqual(readers);
    expect(unread).toHaveLength(memberCount - 1 - readerCount);
    expect(new Set([...read, ...unread]).size).toBe(memberCount - 1);
    expect(unread).toEqual([...unread].sort());
    expect(unread.includes("u000000")).toBe(false); // the sender
  }, 120_000);
});
