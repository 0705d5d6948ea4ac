import type { EndpointKey, FailedDelivery, WebhookStateStore } from "../webhook-state.js";
import { connectRedis, type RedisClient, type RedisEndpoint } from "./redis-connection.js";

// Takes the lease when free, renews it when ours: one instance per endpoint at a time.
const acquireScript = `
local owner = redis.call('GET', KEYS[1])
if owner == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`;

// Only the lease holder moves the cursor: an instance that lost its lease cannot move it back.
const saveCursorScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0`;

const releaseScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`;

/**
 * Webhook state in Redis, beside the Redis change feed, so that every
 * instance sees the same leases and cursors. Failed deliveries are a hash per
 * endpoint (id to delivery), a per-tenant index by failure time and a
 * per-endpoint set of those asked to be replayed.
 *
 * Every key of a tenant carries the tenant as its hash tag, so the scripts and transactions
 * that touch several keys stay in one slot of a Redis Cluster.
 */
export class RedisWebhookState implements WebhookStateStore {
  readonly #redis: RedisClient;
  readonly #prefix: string;

  private constructor(redis: RedisClient, keyPrefix: string) {
    this.#redis = redis;
    this.#prefix = `${keyPrefix}webhooks:`;
  }

  static open(options: {
    readonly endpoint: RedisEndpoint;
    readonly keyPrefix: string;
    readonly onError?: (error: Error) => void;
  }): RedisWebhookState {
    const redis = connectRedis(options.endpoint, {
      commandTimeoutMs: 2_000,
      ...(options.onError === undefined ? {} : { onError: options.onError }),
    });
    return new RedisWebhookState(redis, options.keyPrefix);
  }

  #key(kind: string, key: EndpointKey): string {
    return `${this.#prefix}{${key.tenant}}:${kind}:${key.endpoint}`;
  }

  /** Where cursors and 410 marks were kept before keys carried a hash tag; read, never written. */
  #legacyKey(kind: "cursor" | "disabled", key: EndpointKey): string {
    return `${this.#prefix}${kind}:${key.tenant}:${key.endpoint}`;
  }

  /** The value under the current key, else under the one an older version wrote. */
  async #getWithLegacy(kind: "cursor" | "disabled", key: EndpointKey): Promise<string | undefined> {
    const current = await this.#redis.get(this.#key(kind, key));
    return current ?? (await this.#redis.get(this.#legacyKey(kind, key))) ?? undefined;
  }

  async acquireLease(key: EndpointKey, owner: string, ttlMs: number): Promise<boolean> {
    return (await this.#redis.eval(acquireScript, 1, this.#key("lease", key), owner, ttlMs)) === 1;
  }

  async releaseLease(key: EndpointKey, owner: string): Promise<void> {
    await this.#redis.eval(releaseScript, 1, this.#key("lease", key), owner);
  }

  cursor(key: EndpointKey): Promise<string | undefined> {
    return this.#getWithLegacy("cursor", key);
  }

  async saveCursor(key: EndpointKey, owner: string, position: string): Promise<boolean> {
    const keys = [this.#key("lease", key), this.#key("cursor", key)];
    return (await this.#redis.eval(saveCursorScript, 2, ...keys, owner, position)) === 1;
  }

  disabledUrl(key: EndpointKey): Promise<string | undefined> {
    return this.#getWithLegacy("disabled", key);
  }

  async setDisabled(key: EndpointKey, url: string | undefined): Promise<void> {
    if (url === undefined) {
      await this.#redis.del(this.#key("disabled", key));
      await this.#redis.del(this.#legacyKey("disabled", key));
    } else {
      await this.#redis.set(this.#key("disabled", key), url);
    }
  }

  async addFailed(delivery: FailedDelivery): Promise<void> {
    const multi = this.#redis
      .multi()
      .hset(this.#key("failed", delivery), delivery.webhookId, JSON.stringify(delivery))
      .zadd(this.#index(delivery.tenant), String(delivery.failedAt), member(delivery));
    if (delivery.replayRequested) {
      multi.zadd(this.#key("replay", delivery), String(delivery.failedAt), delivery.webhookId);
    }
    await multi.exec();
  }

  async listFailed(
    tenant: string,
    endpoint: string | undefined,
    limit: number,
  ): Promise<FailedDelivery[]> {
    const found: FailedDelivery[] = [];
    // The index holds every endpoint's failures; one endpoint's are filtered page by page.
    for (let start = 0; found.length < limit; start += 500) {
      const members = await this.#redis.zrange(
        this.#index(tenant),
        String(start),
        String(start + 499),
      );
      if (members.length === 0) break;
      const wanted = members
        .map((m) => m.split("\n") as [string, string])
        .filter(([e]) => endpoint === undefined || e === endpoint);
      for (const [e, id] of wanted) {
        const json = await this.#redis.hget(this.#key("failed", { tenant, endpoint: e }), id);
        if (json !== null && found.length < limit) found.push(JSON.parse(json) as FailedDelivery);
      }
    }
    return found;
  }

  async requestReplay(key: EndpointKey, ids: readonly string[]): Promise<number> {
    const all = await this.#redis.hgetall(this.#key("failed", key));
    const chosen = Object.entries(all).filter(([id]) => ids.length === 0 || ids.includes(id));
    for (const [id, json] of chosen) {
      const delivery = JSON.parse(json) as FailedDelivery;
      await this.addFailed({ ...delivery, replayRequested: true });
      await this.#redis.zadd(this.#key("replay", key), String(delivery.failedAt), id);
    }
    return chosen.length;
  }

  async replays(key: EndpointKey, limit: number): Promise<FailedDelivery[]> {
    const ids = await this.#redis.zrange(this.#key("replay", key), "0", String(limit - 1));
    const found: FailedDelivery[] = [];
    for (const id of ids) {
      const json = await this.#redis.hget(this.#key("failed", key), id);
      if (json === null) await this.#redis.zrem(this.#key("replay", key), id);
      else found.push(JSON.parse(json) as FailedDelivery);
    }
    return found;
  }

  async removeFailed(key: EndpointKey, webhookId: string): Promise<void> {
    await this.#redis
      .multi()
      .hdel(this.#key("failed", key), webhookId)
      .zrem(this.#key("replay", key), webhookId)
      .zrem(this.#index(key.tenant), member({ ...key, webhookId }))
      .exec();
  }

  async pruneFailed(tenant: string, failedBefore: number, limit: number): Promise<number> {
    const members = await this.#redis.zrangebyscore(
      this.#index(tenant),
      "-inf",
      `(${failedBefore}`,
      "LIMIT",
      0,
      limit,
    );
    for (const m of members) {
      const [endpoint, webhookId] = m.split("\n") as [string, string];
      await this.removeFailed({ tenant, endpoint }, webhookId);
    }
    return members.length;
  }

  async close(): Promise<void> {
    this.#redis.disconnect();
  }

  #index(tenant: string): string {
    return `${this.#prefix}{${tenant}}:failed-index`;
  }
}

const member = (d: { readonly endpoint: string; readonly webhookId: string }): string =>
  `${d.endpoint}\n${d.webhookId}`;
