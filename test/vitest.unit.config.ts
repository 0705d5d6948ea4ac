import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * The fast tier (`npm run test:unit`): the domain, the embedded store and the API in memory
 * (createRouterTransport). No global setup: nothing here needs Redis, Cassandra or a socket.
 * `npm test` (vitest.config.ts) runs these and everything else. Here beside the tests, so that
 * the type check of test/ covers it; the paths are from the repository root.
 */
export const unitTests = [
  "src/**/*.test.ts",
  "test/auth-credentials.test.ts",
  "test/auth-policy.property.test.ts",
  "test/cli-user-data-output.test.ts",
  "test/cql-values.test.ts",
  "test/deletion-outcomes.test.ts",
  "test/domain-model.test.ts",
  "test/fixed-delay-timers.test.ts",
  "test/map-concurrently.test.ts",
  "test/membership-monitor.test.ts",
  "test/partition-write-coalescer.test.ts",
  "test/privacy-rpc.test.ts",
  "test/receipt-privacy.test.ts",
  "test/rpc-in-memory.test.ts",
  "test/sqlite-memory.test.ts",
  "test/sqlite-retention.test.ts",
  "test/sqlite-store.test.ts",
  "test/user-erasure.test.ts",
  "test/watch-fan-out.test.ts",
  "test/watch-heartbeats.test.ts",
  "test/watch.test.ts",
];

export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: {
    include: unitTests,
    testTimeout: 30_000,
  },
});
