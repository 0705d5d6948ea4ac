import { configDefaults, defineConfig } from "vitest/config";
import { cassandraClusterTests } from "./test/vitest.cassandra-cluster.config.js";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // Run on their own (npm run test:cassandra-cluster; .ci/run runs them after this).
    exclude: [...configDefaults.exclude, ...cassandraClusterTests],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Starts Cassandra (scripts/cassandra-start.sh) and Redis when nothing answers.
    globalSetup: ["test/global-setup.ts"],
  },
});
