/** An endpoint of a tenant: what webhook state is kept under. */
export interface EndpointKey {
  readonly tenant: string;
  readonly endpoint: string;
}

/** A delivery given up after the retry period; kept until replayed or pruned (RECEIPTS_WEBHOOKS_KEEP_FAILED_DAYS). */
export interface FailedDelivery {
  /** The webhook-id: a replay sends it again, so receivers still drop duplicates. */
  readonly webhookId: string;
  readonly tenant: string;
  readonly endpoint: string;
  /** The request body as it was sent. */
  readonly body: string;
  readonly eventCount: number;
  readonly firstAttemptAt: number;
  readonly failedAt: number;
  readonly attempts: number;
  /** The last attempt's outcome: an HTTP status, "timeout", a connection error code. */
  readonly lastError: string;
  /** Asked to be replayed and not yet delivered. */
  readonly replayRequested: boolean;
}

/**
 * What webhook delivery keeps between processes: per endpoint, a lease (one
 * instance delivers at a time), the cursor in the tenant's change log
 * (everything at or before it is delivered), whether a 410 disabled it, and
 * the deliveries that failed. Kept beside the change log: in SQLite with the
 * embedded feed, in Redis with the Redis feed.
 */
export interface WebhookStateStore {
  /** Takes or renews the lease for `ttlMs`; false when another owner holds it. */
  acquireLease(key: EndpointKey, owner: string, ttlMs: number): Promise<boolean>;
  releaseLease(key: EndpointKey, owner: string): Promise<void>;
  cursor(key: EndpointKey): Promise<string | undefined>;
  /** Moves the cursor while `owner` holds the lease; false (and nothing written) otherwise. */
  saveCursor(key: EndpointKey, owner: string, position: string): Promise<boolean>;
  /** The URL a 410 Gone disabled the endpoint at, if it is disabled. */
  disabledUrl(key: EndpointKey): Promise<string | undefined>;
  setDisabled(key: EndpointKey, url: string | undefined): Promise<void>;
  addFailed(delivery: FailedDelivery): Promise<void>;
  /** Failed deliveries of the tenant (one endpoint, or all), oldest first. */
  listFailed(
    tenant: string,
    endpoint: string | undefined,
    limit: number,
  ): Promise<FailedDelivery[]>;
  /** Marks failed deliveries for replay (all of the endpoint when `ids` is empty); resolves with how many. */
  requestReplay(key: EndpointKey, ids: readonly string[]): Promise<number>;
  /** Failed deliveries of the endpoint marked for replay, oldest first. */
  replays(key: EndpointKey, limit: number): Promise<FailedDelivery[]>;
  removeFailed(key: EndpointKey, webhookId: string): Promise<void>;
  /**
   * Removes up to `limit` of the tenant's failed deliveries that failed before `failedBefore`,
   * oldest first; resolves with how many went (fewer than `limit`: none older is left).
   */
  pruneFailed(tenant: string, failedBefore: number, limit: number): Promise<number>;
  close(): Promise<void>;
}
