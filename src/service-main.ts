import { openBackend, startApp } from "./app.js";
import { type Config, exitOnConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { collectProcessMetrics } from "./ops/metrics.js";
import { cannotListen, startBanner } from "./start-messages.js";

/** The composition root: the only place that reads the environment and listens. */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    exitOnConfigError(error);
  }
  const pretty =
    config.logFormat === "pretty" || (config.logFormat === "auto" && process.stdout.isTTY);
  const logger = createLogger({ level: config.logLevel, pretty });
  const backend = await openBackend(config, logger);
  // Tenants are read when the app starts: a bad tenant file is a configuration error too.
  const app = await startApp(config, backend, logger).catch((error: unknown) => {
    const refusal = cannotListen(error, config);
    if (refusal === undefined) exitOnConfigError(error);
    process.stderr.write(`${refusal}\n`);
    process.exit(2);
  });
  // Process metrics (CPU, memory, event loop, GC) once per process, beside the app's own.
  collectProcessMetrics(app.metrics);
  const banner = startBanner(config, app.port);
  // A person at a terminal reads the addresses and a call to try as lines, not JSON fields.
  logger.info(
    { host: config.host, port: app.port, store: config.store, ...(pretty ? {} : banner.fields) },
    `read-receipt service listening on ${banner.fields.url} (gRPC, gRPC-Web, Connect)`,
  );
  if (pretty) process.stdout.write(banner.text);

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
