import { ensureRedis } from "./global-setup.js";

/**
 * The global setup of the Cassandra cluster tier: only the shared Redis. The tier's tests
 * start a three-node Cassandra cluster of their own, so the shared single node (another JVM
 * on two cores) is not started for them.
 */
export default async function setup(): Promise<void> {
  await ensureRedis();
}
