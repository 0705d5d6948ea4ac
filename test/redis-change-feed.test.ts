import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { openBackend } from "../src/app.js";
import { ConfigError, loadConfig } from "../src/config.js";
import { AccessPolicy } from "../src/domain/access-policy.js";
import { serviceCaller } from "../src/domain/caller.js";
import { StoreUnavailableError } from "../src/domain/errors.js";
import { MembershipService } from "../src/domain/membership-service.js";
import type { PositionedChange, ReceiptChange } from "../src/domain/model.js";
import { ReceiptService } from "../src/domain/receipt-service.js";
import { ReceiptWatcher } from "../src/domain/receipt-watcher.js";
import { type Logger, silentLogger } from "../src/logger.js";
import { ChangeLogExpiredError } from "../src/store/change-feed.js";
import { RedisChangeFeed } from "../src/store/redis/redis-change-feed.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "../src/store/sqlite/sqlite-receipt-store.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";
import { expectReceiptError, groupMessage, minutes, t0, users } from "./support/fixtures.js";
import { RedisServerProcess } from "./support/redis-server.js";
import { deleteKeys, sharedRedisUrl, uniquePrefix } from "./support/shared-redis.js";
import { describeWatchContract, reader } from "./watch-contract.js";

const hour = 3_600_000;
/** Every key this file writes to the shared Redis starts with it; deleted at the end. */
const filePrefix = uniquePrefix("redis-change-feed");
afterAll(() => deleteKeys(filePrefix));

describeWatchContract("the Redis feed", async () => {
  const keyPrefix = `${filePrefix}watch-contract:`;
  const db = openSqliteDatabase(":memory:");
  const feed = await RedisChangeFeed.open({
    url: sharedRedisUrl,
    keyPrefix,
    retentionMs: hour,
    logger: silentLogger,
  });
  return {
    store: new SqliteReceiptStore(db, new SqliteWriteBatcher(db)),
    feed,
    aheadPosition: `${Date.now() + 365 * 24 * hour}-0`,
    async expire(tenant) {
      // Another instance whose clock is a day ahead trims the log as it appends.
      const later = await RedisChangeFeed.open({
        url: sharedRedisUrl,
        keyPrefix,
        retentionMs: hour,
        logger: silentLogger,
        clock: () => Date.now() + 24 * hour,
      });
      await later.publish(tenant, [horizon("elsewhere", 0)]);
      await later.close();
    },
    async close() {
      await feed.close();
      db.close();
    },
  };
});

const horizon = (conversationId: string, readUpTo: number): ReceiptChange => ({
  kind: "horizon",
  conversationId,
  readerId: "r",
  readUpTo,
});

/** Resolves once `predicate` holds (or resolves), polling; fails after `ms`. */
async function eventually(predicate: () => boolean | Promise<unknown>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const held = await Promise.resolve()
      .then(predicate)
      .then(
        (value) => value !== false,
        () => false,
      );
    if (held) return;
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function capturingLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const written: string[] = [];
  const logger = pino({ level: "warn" }, { write: (line: string) => written.push(line) });
  return { logger, lines: () => written.map((line) => JSON.parse(line)) };
}

describe("the Redis change feed", () => {
  const feeds: RedisChangeFeed[] = [];
  const open = async (
    keyPrefix: string,
    options: Partial<Parameters<typeof RedisChangeFeed.open>[0]> = {},
  ) => {
    const feed = await RedisChangeFeed.open({
      url: sharedRedisUrl,
      keyPrefix,
      retentionMs: hour,
      logger: silentLogger,
      ...options,
    });
    feeds.push(feed);
    return feed;
  };
  afterAll(async () => {
    await Promise.all(feeds.map((feed) => feed.close()));
  });

  it("orders positions as Redis stream ids and rejects anything else", async () => {
    const feed = await open(`${filePrefix}positions:`);
    expect(feed.isPosition("0-0")).toBe(true);
    expect(feed.isPosition("1763780000000-12")).toBe(true);
    expect(feed.isPosition("18446744073709551615-18446744073709551615")).toBe(true);
    for (const bad of ["", "12", "1-", "-1", "1-2-3", "a-1", "18446744073709551616-0", " 1-0"]) {
      expect(feed.isPosition(bad), bad).toBe(false);
    }
    expect(feed.comparePositions("9-0", "10-0")).toBeLessThan(0);
    expect(feed.comparePositions("10-2", "10-10")).toBeLessThan(0);
    expect(feed.comparePositions("10-10", "10-10")).toBe(0);
    expect(feed.comparePositions("1763780000001-0", "1763780000000-99")).toBeGreaterThan(0);
    expect(() => feed.comparePositions("x", "1-0")).toThrow();
  });

  it("logs each tenant's changes with increasing positions, reads after a position, and tells its head", async () => {
    const feed = await open(`${filePrefix}log:`);
    const tenant = `t-${randomUUID()}`;
    expect(await feed.head(tenant)).toBe("0-0");
    expect(await feed.readAfter(tenant, "0-0", 10)).toEqual([]);
    const first = await feed.publish(tenant, [horizon("a", 1), horizon("a", 2)]);
    const second = await feed.publish(tenant, [horizon("a", 3)]);
    await feed.publish(`other-${tenant}`, [horizon("b", 1)]);
    const positions = [...first, ...second].map((p) => p.position);
    expect(positions.every(feed.isPosition.bind(feed))).toBe(true);
    for (let i = 1; i < positions.length; i++) {
      expect(feed.comparePositions(positions[i] as string, positions[i - 1] as string)).toBe(1);
    }
    expect(await feed.head(tenant)).toBe(positions[2]);
    expect(await feed.readAfter(tenant, "0-0", 10)).toEqual([...first, ...second]);
    expect(await feed.readAfter(tenant, positions[0] as string, 1)).toEqual([first[1]]);
    expect(await feed.readAfter(tenant, positions[2] as string, 10)).toEqual([]);
  });

  it("keeps changes for the retention window: an older position is refused, the newest trimmed one is not", async () => {
    let now = Date.now();
    const feed = await open(`${filePrefix}retention:`, { clock: () => now });
    const tenant = `t-${randomUUID()}`;
    const old = await feed.publish(tenant, [horizon("a", 1), horizon("a", 2)]);
    now += 2 * hour;
    const kept = await feed.publish(tenant, [horizon("a", 3)]);
    await expect(feed.readAfter(tenant, "0-0", 10)).rejects.toBeInstanceOf(ChangeLogExpiredError);
    await expect(feed.readAfter(tenant, old[0]?.position as string, 10)).rejects.toBeInstanceOf(
      ChangeLogExpiredError,
    );
    expect(await feed.readAfter(tenant, old[1]?.position as string, 10)).toEqual(kept);
    expect(await feed.head(tenant)).toBe(kept[0]?.position);
  });

  it("hands every change to listeners on every instance in position order, whoever published it", async () => {
    const keyPrefix = `${filePrefix}fanout:`;
    const instances = [await open(keyPrefix), await open(keyPrefix), await open(keyPrefix)];
    const tenant = `t-${randomUUID()}`;
    const heard = instances.map(() => [] as PositionedChange[]);
    const stops = instances.map((feed, i) => feed.listen(tenant, (c) => heard[i]?.push(c)));
    await new Promise((resolve) => setTimeout(resolve, 100)); // subscriptions take effect
    const batches = 60;
    await Promise.all(
      Array.from({ length: batches }, (_, i) =>
        instances[i % instances.length]?.publish(
          tenant,
          Array.from({ length: 1 + (i % 3) }, (_, j) => horizon(`c${i}`, j)),
        ),
      ),
    );
    const logged = await instances[0]?.readAfter(tenant, "0-0", 1_000);
    expect(logged).toHaveLength(batches * 2);
    await eventually(() => heard.every((h) => h.length >= batches * 2));
    for (const h of heard) expect(h).toEqual(logged);
    for (const stop of stops) stop();
  });

  it("rings a bell for every append, here or elsewhere, without reading the log; a listener joining later starts at the log's end", async () => {
    const keyPrefix = `${filePrefix}bells:`;
    const [here, elsewhere] = [await open(keyPrefix), await open(keyPrefix)];
    const tenant = `t-${randomUUID()}`;
    // What this tenant's stream is read with, as Redis executes it (the tap reads with
    // XRANGE after its cursor, an exclusive start).
    const monitor = await new Redis(sharedRedisUrl).monitor();
    const tapReads: string[] = [];
    const markers = new Set<string>();
    monitor.on("monitor", (_time: string, args: string[]) => {
      const [command, key, start] = args;
      if (command?.toLowerCase() === "xrange" && key?.includes(tenant) && start?.startsWith("(")) {
        tapReads.push(args.join(" "));
      }
      if (command?.toLowerCase() === "echo" && key !== undefined) markers.add(key);
    });
    // MONITOR reports commands in the order Redis ran them, on its own connection and later:
    // once a marker sent now is reported, every read Redis ran before it has been reported too.
    const marking = new Redis(sharedRedisUrl);
    const reported = async () => {
      const marker = `${tenant}:${randomUUID()}`;
      await marking.echo(marker);
      await eventually(() => markers.has(marker));
    };
    try {
      let rung = 0;
      const unring = here.ring(tenant, () => {
        rung += 1;
      });
      await new Promise((resolve) => setTimeout(resolve, 100)); // the subscription takes effect
      await elsewhere.publish(tenant, [horizon("a", 1)]);
      await eventually(() => rung >= 1);
      const afterElsewhere = rung;
      await here.publish(tenant, [horizon("b", 1)]);
      await eventually(() => rung > afterElsewhere);
      await reported();
      expect(tapReads).toEqual([]);

      const heard: PositionedChange[] = [];
      const unlisten = here.listen(tenant, (c) => heard.push(c));
      const [third] = await elsewhere.publish(tenant, [horizon("c", 1)]);
      await eventually(() => heard.length >= 1);
      expect(heard).toEqual([third]);
      await reported();
      expect(tapReads.length).toBeGreaterThan(0);
      unlisten();
      unring();
    } finally {
      monitor.disconnect();
      marking.disconnect();
    }
  });

  it("lets a watcher on one instance see receipts sent through another, and resume there after the first stops", async () => {
    const keyPrefix = `${filePrefix}two-instances:`;
    const tenant = `t-${randomUUID()}`;
    const db = openSqliteDatabase(":memory:");
    const store = new SqliteReceiptStore(db, new SqliteWriteBatcher(db));
    const [feedA, feedB] = [await open(keyPrefix), await open(keyPrefix)];
    const receiptsA = new ReceiptService({ store, feed: feedA });
    const options = { heartbeatMs: 60_000, bufferLimit: 100, maxStreams: 100 };
    const policy = new AccessPolicy({ store });
    const watcherA = new ReceiptWatcher({ feed: feedA, policy, ...options });
    const watcherB = new ReceiptWatcher({ feed: feedB, policy, ...options });
    await new MembershipService({ store }).addMembers(tenant, serviceCaller, {
      groupId: "g",
      userIds: ["s", ...users("r", 6)],
      joinedAt: t0,
    });
    await receiptsA.trackMessages(tenant, serviceCaller, [groupMessage("m", "g", "s", minutes(1))]);
    const abort = new AbortController();
    const request = { conversationIds: ["g"], senderId: "", resumeToken: "" };
    const onA = reader(watcherA.watch(tenant, serviceCaller, request, abort.signal));
    const onB = reader(watcherB.watch(tenant, serviceCaller, request, abort.signal));
    await onA.first();
    await onB.first();
    const send = (readerId: string) =>
      receiptsA.sendReceipts(tenant, serviceCaller, {
        conversationId: "g",
        readerId,
        messageIds: ["m"],
      });

    await send("r000000");
    const [fromA] = await onB.take(1);
    expect(fromA?.change).toMatchObject({ readerId: "r000000", receipt: { readCount: 1 } });
    const [seenOnA] = await onA.take(1);

    watcherA.close();
    const ended = await expectReceiptError(onA.take(1), "unavailable");
    expect(ended.meta?.["resume-token"]).toBe(seenOnA?.resumeToken);
    await send("r000001");
    await send("r000002");
    const resumed = reader(
      watcherB.watch(
        tenant,
        serviceCaller,
        { ...request, resumeToken: seenOnA?.resumeToken ?? "" },
        abort.signal,
      ),
    );
    const missed = await resumed.take(2);
    await send("r000003");
    const [live] = await resumed.take(1);
    expect([...missed, live].map((e) => e?.change.kind === "receipt" && e.change.readerId)).toEqual(
      ["r000001", "r000002", "r000003"],
    );
    abort.abort();
    db.close();
  });

  describe("when Redis goes away", () => {
    let redis: RedisServerProcess;
    beforeAll(async () => {
      redis = await RedisServerProcess.start();
    });
    afterEach(async () => {
      await redis.restart().catch(() => undefined); // refused when it runs already
    });
    afterAll(async () => {
      await redis?.kill();
    });

    it("refuses to start without Redis", async () => {
      await redis.kill();
      await expect(
        RedisChangeFeed.open({
          url: redis.url,
          keyPrefix: "x:",
          retentionMs: hour,
          logger: silentLogger,
        }),
      ).rejects.toBeInstanceOf(StoreUnavailableError);
    });

    it("catches a listener up on what was published while its subscription was down", async () => {
      const tenant = `t-${randomUUID()}`;
      const publisher = await open("c:", { url: redis.url });
      const listener = await open("c:", { url: redis.url });
      const heard: string[] = [];
      const stop = listener.listen(tenant, (c) => heard.push(c.position));
      await new Promise((resolve) => setTimeout(resolve, 100)); // subscribed
      const admin = new Redis(redis.url);
      try {
        // Drops the subscriber connection only; the doorbell of the next publish is lost.
        await admin.call("CLIENT", "KILL", "TYPE", "pubsub");
      } finally {
        admin.disconnect();
      }
      const published = await publisher.publish(tenant, [horizon("a", 1)]);
      await eventually(() => heard.length > 0);
      expect(heard).toEqual(published.map((p) => p.position));
      stop();
    });

    it("fails a publish that Redis does not answer in time, so that nobody is held; publishing it again appends it once", async () => {
      const tenant = `t-${randomUUID()}`;
      const feed = await open("h:", { url: redis.url, publishTimeoutMs: 200 });
      const admin = new Redis(redis.url);
      try {
        await admin.call("CLIENT", "PAUSE", "2000", "ALL");
        const startedAt = Date.now();
        await expect(feed.publish(tenant, [horizon("a", 1)])).rejects.toBeInstanceOf(
          StoreUnavailableError,
        );
        expect(Date.now() - startedAt).toBeLessThan(1_500);
      } finally {
        await admin.call("CLIENT", "UNPAUSE");
        admin.disconnect();
      }
      // The paused publish may have run once Redis woke up: either way the log holds it once.
      await feed.publish(tenant, [horizon("a", 1)]);
      expect(await feed.publish(tenant, [horizon("a", 1)])).toEqual([]);
      const logged = await feed.readAfter(tenant, "0-0", 10);
      expect(logged.map((p) => p.change)).toEqual([horizon("a", 1)]);
      expect(await feed.publish(tenant, [horizon("a", 2)])).toHaveLength(1);
    });

    it("keeps acknowledging receipts while Redis is down, ends open streams with their resume token, and delivers every receipt once Redis is back", async () => {
      const tenant = `t-${randomUUID()}`;
      const publisher = await open("p:", { url: redis.url });
      const { logger, lines } = capturingLogger();
      const listener = await open("p:", { url: redis.url, logger });
      const db = openSqliteDatabase(":memory:");
      const store = new SqliteReceiptStore(db, new SqliteWriteBatcher(db));
      const announceErrors: unknown[] = [];
      const receipts = new ReceiptService({
        store,
        feed: publisher,
        onAnnounceError: (error) => announceErrors.push(error),
      });
      await new MembershipService({ store }).addMembers(tenant, serviceCaller, {
        groupId: "g",
        userIds: ["s", ...users("r", 8)],
        joinedAt: t0,
      });
      await receipts.trackMessages(tenant, serviceCaller, [
        groupMessage("m", "g", "s", minutes(1)),
      ]);
      const watcher = new ReceiptWatcher({
        feed: listener,
        policy: new AccessPolicy({ store }),
        heartbeatMs: 60_000,
        bufferLimit: 100,
        maxStreams: 100,
      });
      const abort = new AbortController();
      const request = { conversationIds: ["g"], senderId: "", resumeToken: "" };
      const opened = reader(watcher.watch(tenant, serviceCaller, request, abort.signal));
      const first = await opened.first();
      const send = (readerId: string) =>
        receipts.sendReceipts(tenant, serviceCaller, {
          conversationId: "g",
          readerId,
          messageIds: ["m"],
        });
      await send("r000000");
      await opened.take(1);

      // The log survives the restart, as a Redis with persistence does.
      await redis.save();
      await redis.kill();
      const acknowledged = [];
      for (const readerId of users("r", 6).slice(1)) {
        const startedAt = Date.now();
        acknowledged.push(await send(readerId));
        // Acknowledging does not wait on the feed.
        expect(Date.now() - startedAt).toBeLessThan(1_000);
      }
      expect(acknowledged.map((r) => r[0]?.readCount)).toEqual([2, 3, 4, 5, 6]);
      await eventually(() => announceErrors.length >= 5);
      expect((await store.pendingChanges(Date.now() + 1, 100)).length).toBe(5);
      // The stream that was open is told: it ends UNAVAILABLE with where to resume.
      const ended = await expectReceiptError(opened.take(1), "unavailable");
      const resumeToken = ended.meta?.["resume-token"] as string;
      expect(resumeToken).toBeTruthy();
      expect(first.kind).toBe("heartbeat");
      expect(
        lines().some((line) => /ending open streams|could not read/.test(String(line.msg))),
      ).toBe(true);
      const refused = await reader(watcher.watch(tenant, serviceCaller, request, abort.signal))
        .first()
        .catch((error: unknown) => error);
      expect(refused).toMatchObject({ kind: "unavailable" });

      await redis.restart();
      await eventually(() => publisher.head(tenant));
      receipts.announcer.start();
      try {
        const resumed = reader(
          watcher.watch(tenant, serviceCaller, { ...request, resumeToken }, abort.signal),
        );
        const delivered = await resumed.take(5);
        expect(delivered.map((e) => e.change.kind === "receipt" && e.change.readerId)).toEqual(
          users("r", 6).slice(1),
        );
        // Described again when swept: each with the count as it stands then, never going down.
        const counts = delivered.map((e) =>
          e.change.kind === "receipt" ? e.change.receipt.readCount : -1,
        );
        expect(counts).toEqual([...counts].sort((a, b) => a - b));
        expect(counts.at(-1)).toBe(6);
        await eventually(
          async () => (await store.pendingChanges(Date.now() + 1, 100)).length === 0,
        );
        await send("r000006");
        const [after] = await resumed.take(1);
        expect(after?.change).toMatchObject({ readerId: "r000006", receipt: { readCount: 7 } });
      } finally {
        abort.abort();
        await receipts.announcer.close();
        db.close();
      }
    });
  });
});

describe("choosing the change feed (RECEIPTS_CHANGE_FEED)", () => {
  it("defaults to the embedded feed with the embedded store and to Redis with Cassandra", () => {
    expect(loadConfig({}).changeFeed).toBe("embedded");
    expect(loadConfig({ RECEIPTS_STORE: "cassandra" }).changeFeed).toBe("redis");
    expect(loadConfig({ RECEIPTS_CHANGE_FEED: "redis" })).toMatchObject({
      changeFeed: "redis",
      redisUrl: "redis://127.0.0.1:6379",
      redisKeyPrefix: "receipts:",
    });
  });

  it("reports a bad feed or Redis URL by name", () => {
    const error = (() => {
      try {
        loadConfig({ RECEIPTS_CHANGE_FEED: "kafka", RECEIPTS_REDIS_URL: "http://redis:6379" });
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join("\n");
    expect(problems).toContain("RECEIPTS_CHANGE_FEED=kafka");
    expect(problems).toContain("RECEIPTS_REDIS_URL=http://redis:6379");
  });

  it("opens the Redis feed for the service, and refuses to start when Redis does not answer", async () => {
    const keyPrefix = `${filePrefix}backend:`;
    const config = loadConfig({
      RECEIPTS_CHANGE_FEED: "redis",
      RECEIPTS_REDIS_URL: sharedRedisUrl,
      RECEIPTS_REDIS_KEY_PREFIX: keyPrefix,
      RECEIPTS_DATA_DIR: ":memory:",
    });
    const backend = await openBackend(config);
    try {
      expect(backend.feed).toBeInstanceOf(RedisChangeFeed);
      const [logged] = await backend.feed.publish("t", [horizon("a", 1)]);
      expect(await backend.feed.head("t")).toBe(logged?.position);
    } finally {
      await backend.feed.close();
      await backend.store.close();
    }
    const unreachable = loadConfig({
      RECEIPTS_CHANGE_FEED: "redis",
      RECEIPTS_REDIS_URL: "redis://127.0.0.1:1",
      RECEIPTS_DATA_DIR: ":memory:",
    });
    await expect(openBackend(unreachable)).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});
