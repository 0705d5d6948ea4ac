import { type Stats, unwatchFile, watchFile } from "node:fs";
import { readFile } from "node:fs/promises";
import { defaultTenantSettings, type TenantSettings } from "../domain/tenant-settings.js";
import { defaultTenantLimits, type TenantLimits } from "../limits/rate-limiter.js";
import type { Logger } from "../logger.js";
import type { WebhookEndpoint, WebhookUrlRules } from "../webhooks/webhook-endpoint.js";
import {
  type CredentialIndex,
  importTenantCredentials,
  indexCredentials,
  type TenantCredentials,
} from "./credential-verifier.js";
import {
  mergeTenants,
  parseTenants,
  type TenantConfig,
  TenantConfigError,
} from "./tenant-config.js";

/** Where tenants come from: a JSON file (reloadable), an environment variable, or both. */
export interface TenantSources {
  /** RECEIPTS_TENANTS_FILE: watched, re-read on change and on reload(). */
  readonly file: string | undefined;
  /** RECEIPTS_TENANTS: fixed for the life of the process. */
  readonly json: string | undefined;
  /** How often the file's modification time is checked. */
  readonly pollIntervalMs: number;
  /** RECEIPTS_WEBHOOKS_ALLOW_PRIVATE: what webhook URLs may point at. */
  readonly webhookUrls?: WebhookUrlRules;
}

interface Snapshot {
  readonly tenants: ReadonlyMap<string, TenantConfig>;
  readonly credentials: CredentialIndex;
  /** Each tenant's webhook endpoints (tenants without any left out). */
  readonly webhooks: ReadonlyMap<string, readonly WebhookEndpoint[]>;
}

/**
 * The configured tenants, swapped as a whole on reload. A reload that fails (unreadable file,
 * bad JSON, a bad key) keeps the last good configuration and logs every problem. With no
 * source at all the registry is in development mode: no tenant, no credential checks.
 */
export class TenantRegistry {
  readonly #sources: TenantSources;
  readonly #logger: Logger;
  #snapshot: Snapshot;
  #reloading: Promise<boolean> = Promise.resolve(true);
  #watching: ((current: Stats, previous: Stats) => void) | undefined;
  readonly #reloaded = new Set<() => void>();

  private constructor(sources: TenantSources, logger: Logger, snapshot: Snapshot) {
    this.#sources = sources;
    this.#logger = logger;
    this.#snapshot = snapshot;
  }

  /** Loads the tenants; throws TenantConfigError listing every problem when they are unusable. */
  static async open(sources: TenantSources, logger: Logger): Promise<TenantRegistry> {
    const registry = new TenantRegistry(sources, logger, await load(sources));
    if (sources.file !== undefined) registry.#watch(sources.file);
    return registry;
  }

  /** No tenant source configured: every call is the default tenant's service caller. */
  get devMode(): boolean {
    return this.#sources.file === undefined && this.#sources.json === undefined;
  }

  get tenantIds(): readonly string[] {
    return [...this.#snapshot.tenants.keys()];
  }

  /** Every tenant's webhook endpoints, as of the last good configuration. */
  get webhooks(): ReadonlyMap<string, readonly WebhookEndpoint[]> {
    return this.#snapshot.webhooks;
  }

  get credentials(): CredentialIndex {
    return this.#snapshot.credentials;
  }

  settingsOf(tenant: string): TenantSettings {
    return this.#snapshot.tenants.get(tenant)?.settings ?? defaultTenantSettings;
  }

  limitsOf(tenant: string): TenantLimits {
    return this.#snapshot.tenants.get(tenant)?.limits ?? defaultTenantLimits;
  }

  /** Re-reads every source; resolves whether the new configuration is now in use. */
  reload(): Promise<boolean> {
    this.#reloading = this.#reloading.then(() => this.#reloadOnce());
    return this.#reloading;
  }

  /** Calls `listener` after every reload that put a new configuration in use. */
  onReload(listener: () => void): () => void {
    this.#reloaded.add(listener);
    return () => this.#reloaded.delete(listener);
  }

  close(): void {
    if (this.#sources.file !== undefined && this.#watching !== undefined) {
      unwatchFile(this.#sources.file, this.#watching);
    }
    this.#watching = undefined;
  }

  async #reloadOnce(): Promise<boolean> {
    try {
      this.#snapshot = await load(this.#sources);
      this.#logger.info({ tenants: this.tenantIds.length }, "tenant configuration reloaded");
      for (const listener of this.#reloaded) listener();
      return true;
    } catch (error) {
      const problems =
        error instanceof TenantConfigError ? error.problems : [(error as Error).message];
      this.#logger.error(
        { problems },
        "tenant configuration reload failed; keeping the last good configuration",
      );
      return false;
    }
  }

  #watch(file: string): void {
    // Polling the file's stat survives editors that replace the file and Kubernetes ConfigMap
    // symlink swaps, where fs.watch loses track.
    this.#watching = (current, previous) => {
      if (current.mtimeMs !== previous.mtimeMs || current.size !== previous.size) {
        void this.reload();
      }
    };
    watchFile(file, { interval: this.#sources.pollIntervalMs, persistent: false }, this.#watching);
  }
}

async function load(sources: TenantSources): Promise<Snapshot> {
  const parsed: TenantConfig[][] = [];
  if (sources.file !== undefined) {
    let text: string;
    try {
      text = await readFile(sources.file, "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new TenantConfigError([
        `RECEIPTS_TENANTS_FILE=${sources.file}: cannot be read (${code})`,
      ]);
    }
    parsed.push(parseTenants(text, `RECEIPTS_TENANTS_FILE=${sources.file}`, sources.webhookUrls));
  }
  if (sources.json !== undefined) {
    parsed.push(parseTenants(sources.json, "RECEIPTS_TENANTS", sources.webhookUrls));
  }
  const tenants = mergeTenants(parsed);
  const problems: string[] = [];
  const credentials: TenantCredentials[] = [];
  for (const tenant of tenants) {
    try {
      credentials.push(await importTenantCredentials(tenant));
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  if (problems.length > 0) throw new TenantConfigError(problems);
  return {
    tenants: new Map(tenants.map((t) => [t.id, t])),
    credentials: indexCredentials(credentials),
    webhooks: new Map(tenants.filter((t) => t.webhooks.length > 0).map((t) => [t.id, t.webhooks])),
  };
}
