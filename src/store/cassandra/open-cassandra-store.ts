import type { Config } from "../../config.js";
import type { Logger } from "../../logger.js";
import type { ReceiptStore } from "../receipt-store.js";
import { connectRedis, type RedisEndpoint } from "../redis/redis-connection.js";
import { RedisReadCountCache } from "../redis/redis-read-count-cache.js";
import { createCassandraClient } from "./cassandra-client.js";
import { CassandraReceiptStore } from "./cassandra-receipt-store.js";
import { applyCassandraSchema } from "./cassandra-schema.js";
import { forwardServerWarnings, type ServerWarning } from "./cassandra-server-warnings.js";

/** The configured Cassandra settings (see CassandraReceiptStoreOptions), and the cache's Redis. */
export interface CassandraBackendOptions
  extends Omit<Config["cassandra"], "cacheTtlMs" | "cacheMaxSuspects"> {
  readonly redis: RedisEndpoint & {
    readonly keyPrefix: string;
    readonly cacheTtlMs: number;
    readonly cacheMaxSuspects?: number;
    /** Told the hits and misses of each read-count lookup (metrics). */
    readonly onCacheLookup?: (hits: number, misses: number) => void;
  };
  /** Told each warning Cassandra sends with an answer (metrics). */
  readonly onServerWarning?: (warning: ServerWarning) => void;
}

/**
 * Opens the production store: connects to Cassandra (failing if it cannot),
 * applies the schema, and puts the Redis read-count cache in front. Redis
 * need not be up: the cache connects in the background and stays out of the
 * way until then. Closing the store closes both connections.
 */
export async function openCassandraStore(
  options: CassandraBackendOptions,
  logger: Logger,
): Promise<ReceiptStore> {
  const client = createCassandraClient(options);
  forwardServerWarnings(client, logger, options.onServerWarning);
  await client.connect();
  try {
    await applyCassandraSchema(client, {
      keyspace: options.keyspace,
      replication: options.replication,
    });
  } catch (error) {
    await client.shutdown();
    throw error;
  }
  let lastRedisError = 0;
  const redis = connectRedis(options.redis, {
    onError: (error) => {
      // One line per minute at most: the cache is optional, its outage is not news every retry.
      if (Date.now() - lastRedisError < 60_000) return;
      lastRedisError = Date.now();
      logger.warn({ err: error }, "read-count cache (Redis) unavailable; counting in Cassandra");
    },
  });
  const cache = new RedisReadCountCache(redis, {
    keyPrefix: options.redis.keyPrefix,
    ttlMs: options.redis.cacheTtlMs,
    maxSuspectEntries: options.redis.cacheMaxSuspects,
    onLookup: options.redis.onCacheLookup,
  });
  return new CassandraReceiptStore(client, {
    keyspace: options.keyspace,
    consistency: options.consistency,
    serialConsistency: options.serialConsistency,
    localCacheEntries: options.localCacheEntries,
    outboxWriterLapseMs: options.outboxLapseMs,
    cache,
    async release() {
      await cache.close();
      redis.disconnect();
      await client.shutdown();
    },
  });
}
