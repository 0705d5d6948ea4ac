import type { DatabaseSync } from "node:sqlite";
import type { Config } from "../config.js";
import type { Logger } from "../logger.js";
import { RedisWebhookState } from "../store/redis/redis-webhook-state.js";
import { SqliteWebhookState } from "../store/sqlite/sqlite-webhook-state.js";
import type { SqliteWriteBatcher } from "../store/sqlite/sqlite-write-batcher.js";
import type { WebhookStateStore } from "../store/webhook-state.js";

/** Webhook state beside the configured change log: Redis with the Redis feed, else SQLite. */
export function openWebhookState(
  config: Config,
  embedded: () => { readonly db: DatabaseSync; readonly writes: SqliteWriteBatcher },
  logger: Logger,
): WebhookStateStore {
  return config.changeFeed === "redis"
    ? RedisWebhookState.open({
        endpoint: { url: config.redisUrl, clusterNodes: config.redisClusterNodes },
        keyPrefix: config.redisKeyPrefix,
        onError: (error) => logger.debug({ err: error }, "webhook state: Redis error"),
      })
    : new SqliteWebhookState(embedded().db, embedded().writes);
}
