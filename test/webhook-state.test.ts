import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { silentLogger } from "../src/logger.js";
import type { ChangeFeed } from "../src/store/change-feed.js";
import { RedisWebhookState } from "../src/store/redis/redis-webhook-state.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteWebhookState } from "../src/store/sqlite/sqlite-webhook-state.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";
import type { FailedDelivery } from "../src/store/webhook-state.js";
import type { DeliveryObserver } from "../src/webhooks/endpoint-delivery.js";
import { retryDelayMs } from "../src/webhooks/retry-delay.js";
import { WebhookDispatcher } from "../src/webhooks/webhook-dispatcher.js";
import { deleteKeys, sharedRedisUrl, uniquePrefix } from "./support/shared-redis.js";
import { describeWebhookState, untilAnswering } from "./webhook-state-contract.js";

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
  const state = RedisWebhookState.open({ endpoint: { url: sharedRedisUrl }, keyPrefix });
  await untilAnswering(state);
  return state;
});

it("reads a cursor and a 410 mark kept under the keys of the version before hash tags", async () => {
  const keyPrefix = uniquePrefix("webhook-legacy");
  redisPrefixes.push(keyPrefix);
  const raw = new Redis(sharedRedisUrl);
  await raw.set(`${keyPrefix}webhooks:cursor:acme:crm`, "41");
  await raw.set(`${keyPrefix}webhooks:disabled:acme:crm`, "https://hooks.example.com/gone");
  raw.disconnect();
  const state = RedisWebhookState.open({ endpoint: { url: sharedRedisUrl }, keyPrefix });
  await untilAnswering(state);
  try {
    const key = { tenant: "acme", endpoint: "crm" };
    expect(await state.cursor(key)).toBe("41");
    expect(await state.disabledUrl(key)).toBe("https://hooks.example.com/gone");
    expect(await state.acquireLease(key, "a", 5_000)).toBe(true);
    expect(await state.saveCursor(key, "a", "42")).toBe(true);
    expect(await state.cursor(key)).toBe("42");
    await state.setDisabled(key, undefined);
    expect(await state.disabledUrl(key)).toBeUndefined();
  } finally {
    await state.close();
  }
});

it("the dispatcher prunes failed deliveries past RECEIPTS_WEBHOOKS_KEEP_FAILED_DAYS", async () => {
  const db = openSqliteDatabase(":memory:");
  const state = new SqliteWebhookState(db, new SqliteWriteBatcher(db));
  const day = 86_400_000;
  const failure = (webhookId: string, failedAt: number): FailedDelivery => ({
    webhookId,
    tenant: "acme",
    endpoint: "crm",
    body: "{}",
    eventCount: 1,
    firstAttemptAt: failedAt,
    failedAt,
    attempts: 9,
    lastError: "500",
    replayRequested: false,
  });
  await state.addFailed(failure("kept", Date.now() - 2 * day));
  await state.addFailed(failure("expired", Date.now() - 4 * day));
  const ignore = () => undefined;
  const observer: DeliveryObserver = {
    delivered: ignore,
    retried: ignore,
    failed: ignore,
    disabled: ignore,
    failing: ignore,
    lag: ignore,
  };
  const dispatcher = new WebhookDispatcher({
    // Never read: the only endpoint is switched off, so no delivery starts.
    feed: {} as ChangeFeed,
    state,
    endpoints: () =>
      new Map([
        [
          "acme",
          [
            {
              id: "crm",
              url: "https://hooks.example.com/",
              secrets: [],
              events: ["receipt.read"],
              enabled: false,
              concurrency: 1,
              timeoutMs: 1_000,
              batchSize: 1,
            },
          ],
        ],
      ]),
    rules: { allowPrivate: false },
    retryPeriodMs: day,
    backoffBaseMs: 1_000,
    backoffMaxMs: 10_000,
    leaseMs: 15_000,
    keepFailedMs: 3 * day,
    observer,
    logger: silentLogger,
  });
  await dispatcher.tick();
  await dispatcher.close();
  expect((await state.listFailed("acme", undefined, 10)).map((f) => f.webhookId)).toEqual(["kept"]);
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
