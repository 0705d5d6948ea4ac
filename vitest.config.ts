import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Starts Cassandra (scripts/cassandra-start.sh) and Redis when nothing answers.
    globalSetup: ["test/global-setup.ts"],
  },
});
