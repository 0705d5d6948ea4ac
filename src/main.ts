import { openBackend, startApp } from "./app.js";
import { exitOnConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { collectProcessMetrics } from "./ops/metrics.js";

/** The composition root: the only place that reads the environment and listens. */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    exitOnConfigError(error);
  }
  const logger = createLogger({ level: config.logLevel });
  const backend = await openBackend(config, logger);
  // Tenants are read when the app starts: a bad tenant file is a configuration error too.
  const app = await startApp(config, backend, logger).catch(exitOnConfigError);
  // Process metrics (CPU, memory, event loop, GC) once per process, beside the app's own.
  collectProcessMetrics(app.metrics);
  logger.info(
    { host: config.host, port: app.port, store: config.store },
    "read-receipt service listening (gRPC, gRPC-Web, Connect)",
  );

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    app.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGHUP", () => void app.reloadTenants());
}

await main();
