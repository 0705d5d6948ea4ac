import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, openBackend, startApp } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { silentLogger } from "../../src/logger.js";

export interface TestServer {
  readonly app: App;
  readonly baseUrl: string;
  readonly address: string;
  readonly dataDir: string;
  stop(): Promise<void>;
}

/** Starts the real server on a free loopback port with a fresh embedded store. */
export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  const dataDir = env.RECEIPTS_DATA_DIR ?? mkdtempSync(join(tmpdir(), "receipts-test-"));
  const config = loadConfig({ RECEIPTS_PORT: "0", RECEIPTS_DATA_DIR: dataDir, ...env });
  const app = await startApp(config, await openBackend(config), silentLogger);
  return {
    app,
    baseUrl: `http://127.0.0.1:${app.port}`,
    address: `127.0.0.1:${app.port}`,
    dataDir,
    async stop() {
      await app.stop();
      if (env.RECEIPTS_DATA_DIR === undefined) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
