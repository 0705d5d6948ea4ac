import { openBackend, startApp } from "../src/app.js";
import { exitOnConfigError, loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { registerBenchRoutes } from "./bench-routes.js";

/**
 * The service as src/main.ts composes it, plus bench.v1.BenchService when
 * RECEIPTS_BENCH_EMPTY_RPC=1: the process the benchmark starts and drives
 * over the network. Prints one JSON line with the port once it listens.
 */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    exitOnConfigError(error);
  }
  const logger = createLogger({ level: config.logLevel });
  const backend = await openBackend(config, logger);
  let openStreams = async () => 0;
  const app = await startApp(
    config,
    backend,
    logger,
    process.env.RECEIPTS_BENCH_EMPTY_RPC === "1"
      ? (router) => registerBenchRoutes(router, () => openStreams())
      : undefined,
  );
  openStreams = async () =>
    (await app.metrics.openStreams.get()).values.reduce((sum, v) => sum + v.value, 0);
  process.stdout.write(`${JSON.stringify({ benchServer: "listening", port: app.port })}\n`);
  const stop = () => {
    app.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

await main();
