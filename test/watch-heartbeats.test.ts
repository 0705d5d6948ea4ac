import { afterEach, describe, expect, it } from "vitest";
import { AccessPolicy } from "../src/domain/access-policy.js";
import { serviceCaller } from "../src/domain/caller.js";
import { ReceiptWatcher } from "../src/domain/receipt-watcher.js";
import { SqliteChangeFeed } from "../src/store/sqlite/sqlite-change-feed.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "../src/store/sqlite/sqlite-receipt-store.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";

const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length;

describe("heartbeats of many idle streams", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function open(heartbeatMs: number, streams: number) {
    const db = openSqliteDatabase(":memory:");
    const writes = new SqliteWriteBatcher(db);
    const feed = new SqliteChangeFeed(db, writes, { retentionMs: 3_600_000 });
    const policy = new AccessPolicy({ store: new SqliteReceiptStore(db, writes) });
    const watcher = new ReceiptWatcher({
      feed,
      policy,
      heartbeatMs,
      bufferLimit: 100,
      maxStreams: 10_000,
    });
    const abort = new AbortController();
    const opened = Array.from({ length: streams }, (_, i) =>
      watcher.watch(
        "t",
        serviceCaller,
        { conversationIds: [`g${i}`], senderId: "", resumeToken: "" },
        abort.signal,
      ),
    );
    cleanups.push(async () => {
      abort.abort();
      await Promise.all(opened.map((stream) => stream.return(undefined)));
      await feed.close();
      db.close();
    });
    return opened;
  }

  it("waits on one timer for all of them, not one each", async () => {
    const streams = open(60_000, 500);
    for (const stream of streams) expect((await stream.next()).value?.kind).toBe("heartbeat");
    const before = timers();
    // Each stream now waits for its next heartbeat or change.
    const waiting = streams.map((stream) => stream.next());
    await new Promise((resolve) => setImmediate(resolve));
    expect(timers() - before).toBeLessThanOrEqual(2);
    expect(waiting).toHaveLength(500);
  });

  it("still gives every stream its next heartbeat, each with a resume token", async () => {
    const streams = open(20, 50);
    for (const stream of streams) await stream.next();
    const next = await Promise.all(streams.map((stream) => stream.next()));
    expect(next.map((event) => event.value?.kind)).toEqual(Array(50).fill("heartbeat"));
    for (const event of next) expect(event.value?.resumeToken).not.toBe("");
  });
});
