import { Client, policies, type tracker, types } from "cassandra-driver";

export interface CassandraClientOptions {
  /** host:port entries; the driver discovers the rest of the cluster from them. */
  readonly contactPoints: readonly string[];
  readonly localDataCenter: string;
  readonly requestTracker?: tracker.RequestTracker;
  /** Delay between attempts to reach a node that is down. */
  readonly reconnectDelayMs?: number;
  /** A request without an answer after this long fails (then StoreUnavailableError). */
  readonly readTimeoutMs?: number;
}

/**
 * The one long-lived Client of a process. Token-aware, local-datacenter
 * routing (the driver's default policy, made explicit); bigint columns as
 * JavaScript bigints.
 */
export function createCassandraClient(options: CassandraClientOptions): Client {
  return new Client({
    contactPoints: [...options.contactPoints],
    localDataCenter: options.localDataCenter,
    policies: {
      loadBalancing: new policies.loadBalancing.DefaultLoadBalancingPolicy({
        localDc: options.localDataCenter,
      }),
      reconnection: new policies.reconnection.ExponentialReconnectionPolicy(
        options.reconnectDelayMs ?? 1_000,
        60_000,
        false,
      ),
    },
    queryOptions: {
      consistency: types.consistencies.localQuorum,
      serialConsistency: types.consistencies.localSerial,
      prepare: true,
    },
    socketOptions: { connectTimeout: 5_000, readTimeout: options.readTimeoutMs ?? 12_000 },
    encoding: { useBigIntAsLong: true },
    ...(options.requestTracker === undefined ? {} : { requestTracker: options.requestTracker }),
  });
}
