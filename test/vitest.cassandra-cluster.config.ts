import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * The Cassandra cluster tier (`npm run test:cassandra-cluster`): fault tests on a three-node
 * cluster of their own, three JVMs that would starve the rest of `npm test` of the machine's
 * two cores, so they run on their own after it (.ci/run does). They start every server they use
 * (a Cassandra cluster and a Redis Cluster of their own), so there is no global setup: neither
 * the shared Cassandra node nor the shared Redis is needed.
 */
export const cassandraClusterTests = ["test/cassandra-cluster-faults.test.ts"];

export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: {
    include: cassandraClusterTests,
    testTimeout: 300_000,
    hookTimeout: 900_000,
  },
});
