import { afterAll, describe, expect, it } from "vitest";
import { RedisWebhookState } from "../src/store/redis/redis-webhook-state.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteWebhookState } from "../src/store/sqlite/sqlite-webhook-state.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";
import type { FailedDelivery, WebhookStateStore } from "../src/store/webhook-state.js";
import { retryDelayMs } from "../src/webhooks/retry-delay.js";
import { deleteKeys, sharedRedisUrl, uniquePrefix } from "./support/shared-redis.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The same promises from every backend of webhook state. */
function describeWebhookState(name: string, open: () => Promise<WebhookStateStore>): void {
  describe(`webhook state in ${name}`, () => {
    const key = { tenant: "acme", endpoint: "crm" };
    /** Runs `check` on a freshly opened state, closed afterwards. */
    const withState = async (check: (state: WebhookStateStore) => Promise<void>) => {
      const state = await open();
      try {
        await check(state);
      } finally {
        await state.close();
      }
    };

    it("gives an endpoint's lease to one owner at a time, and to another once it expires", async () => {
      await withState(async (state) => {
        expect(await state.acquireLease(key, "a", 300)).toBe(true);
        expect(await state.acquireLease(key, "b", 300)).toBe(false);
        expect(await state.acquireLease(key, "a", 300)).toBe(true); // renewed
        expect(await state.acquireLease({ ...key, endpoint: "ops" }, "b", 300)).toBe(true);
        await sleep(400);
        expect(await state.acquireLease(key, "b", 300)).toBe(true);
        expect(await state.acquireLease(key, "a", 300)).toBe(false);
        await state.releaseLease(key, "a"); // not a's: nothing happens
        expect(await state.acquireLease(key, "a", 300)).toBe(false);
        await state.releaseLease(key, "b");
        expect(await state.acquireLease(key, "a", 300)).toBe(true);
      });
    });

    it("moves the cursor only for the lease holder", async () => {
      await withState(async (state) => {
        expect(await state.cursor(key)).toBeUndefined();
        expect(await state.acquireLease(key, "a", 5_000)).toBe(true);
        expect(await state.saveCursor(key, "a", "12")).toBe(true);
        expect(await state.saveCursor(key, "b", "99")).toBe(false);
        expect(await state.cursor(key)).toBe("12");
      });
    });

    it("remembers the URL a 410 disabled, until cleared", async () => {
      await withState(async (state) => {
        expect(await state.disabledUrl(key)).toBeUndefined();
        await state.setDisabled(key, "https://hooks.example.com/x");
        expect(await state.disabledUrl(key)).toBe("https://hooks.example.com/x");
        await state.setDisabled(key, undefined);
        expect(await state.disabledUrl(key)).toBeUndefined();
      });
    });

    it("keeps failed deliveries, lists them oldest first, marks and removes replays", async () => {
      const failed = (webhookId: string, endpoint: string, failedAt: number): FailedDelivery => ({
        webhookId,
        tenant: "acme",
        endpoint,
        body: `{"id":"${webhookId}"}`,
        eventCount: 1,
        firstAttemptAt: failedAt - 1_000,
        failedAt,
        attempts: 3,
        lastError: "500",
        replayRequested: false,
      });
      await withState(async (state) => {
        await state.addFailed(failed("msg_2", "crm", 2_000));
        await state.addFailed(failed("msg_1", "crm", 1_000));
        await state.addFailed(failed("msg_3", "ops", 3_000));
        expect((await state.listFailed("acme", undefined, 10)).map((f) => f.webhookId)).toEqual([
          "msg_1",
          "msg_2",
          "msg_3",
        ]);
        expect((await state.listFailed("acme", "crm", 1)).map((f) => f.webhookId)).toEqual([
          "msg_1",
        ]);
        expect(await state.listFailed("other", undefined, 10)).toEqual([]);
        expect(await state.replays(key, 10)).toEqual([]);
        expect(await state.requestReplay(key, ["msg_2", "msg_9"])).toBe(1);
        expect(await state.replays(key, 10)).toEqual([
          { ...failed("msg_2", "crm", 2_000), replayRequested: true },
        ]);
        expect(await state.requestReplay(key, [])).toBe(2);
        expect((await state.replays(key, 10)).map((f) => f.webhookId)).toEqual(["msg_1", "msg_2"]);
        await state.removeFailed(key, "msg_1");
        expect((await state.replays(key, 10)).map((f) => f.webhookId)).toEqual(["msg_2"]);
        expect((await state.listFailed("acme", undefined, 10)).map((f) => f.webhookId)).toEqual([
          "msg_2",
          "msg_3",
        ]);
      });
    });
  });
}

describeWebhookState("SQLite", async () => {
  const db = openSqliteDatabase(":memory:");
  return new SqliteWebhookState(db, new SqliteWriteBatcher(db));
});

const redisPrefixes: string[] = [];
afterAll(async () => {
  for (const prefix of redisPrefixes) await deleteKeys(prefix);
});

describeWebhookState("Redis", async () => {
  const keyPrefix = uniquePrefix("webhook-state");
  redisPrefixes.push(keyPrefix);
  const state = RedisWebhookState.open({ url: sharedRedisUrl, keyPrefix });
  // Without an offline queue, commands fail until the connection is up.
  const probe = { tenant: "-", endpoint: "-" };
  for (
    let i = 0;
    i < 100 &&
    !(await state.cursor(probe).then(
      () => true,
      () => false,
    ));
    i++
  ) {
    await sleep(20);
  }
  return state;
});

describe("retry delays", () => {
  it("are full-jitter exponential: between 0 and min(max, base * 2^(attempt-1))", () => {
    expect(retryDelayMs(1, 100, 10_000, () => 0.999)).toBe(99);
    expect(retryDelayMs(4, 100, 10_000, () => 0.999)).toBe(799);
    expect(retryDelayMs(30, 100, 10_000, () => 0.999)).toBe(9_990);
    expect(retryDelayMs(5, 100, 10_000, () => 0)).toBe(0);
    const spread = new Set(Array.from({ length: 50 }, () => retryDelayMs(10, 100, 10_000)));
    expect(spread.size).toBeGreaterThan(10);
  });
});
