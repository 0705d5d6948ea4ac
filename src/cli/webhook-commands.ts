import { join } from "node:path";
import type { DatabaseSync } from "node:sqlite";
import { testWebhookEvent, webhookBody, webhookId } from "../api/webhook-payload.js";
import { TenantRegistry } from "../auth/tenant-registry.js";
import { type Config, ConfigError, loadConfig } from "../config.js";
import { silentLogger } from "../logger.js";
import { openSqliteDatabase } from "../store/sqlite/sqlite-database.js";
import { SqliteWriteBatcher } from "../store/sqlite/sqlite-write-batcher.js";
import type { WebhookStateStore } from "../store/webhook-state.js";
import { openWebhookState } from "../webhooks/open-webhook-state.js";
import { WebhookSender } from "../webhooks/webhook-sender.js";
import { signatureHeaders } from "../webhooks/webhook-signature.js";
import { CliError, exitCodes, usageError } from "./cli-error.js";
import { type CommandContext, required, wholeNumber } from "./commands.js";

/**
 * `receipts webhooks failed|replay|enable|test`: run where the service runs, with its environment
 * (RECEIPTS_STORE, RECEIPTS_CHANGE_FEED, RECEIPTS_REDIS_URL, RECEIPTS_DATA_DIR, the tenants):
 * they read and mark the webhook state the service keeps, and `test` posts from here.
 */
export async function webhooks(context: CommandContext): Promise<void> {
  const [action, ...ids] = context.positionals;
  const config = serviceConfig();
  const tenant = required(context, "tenant");
  const endpoint =
    typeof context.options.endpoint === "string" ? context.options.endpoint : undefined;
  switch (action) {
    case "failed":
      return withState(config, async (state) => {
        const limit = wholeNumber("limit", (context.options.limit as string) ?? "100", 1, 10_000);
        for (const failed of await state.listFailed(tenant, endpoint, limit)) {
          const { body: _body, ...shown } = failed;
          context.output.out(
            context.output.json
              ? JSON.stringify(shown)
              : `${failed.webhookId}  ${failed.endpoint}  ${failed.eventCount} events  failed ${new Date(failed.failedAt).toISOString()} after ${failed.attempts} attempts (${failed.lastError})${failed.replayRequested ? "  replay requested" : ""}`,
          );
        }
      });
    case "replay":
      return withState(config, async (state) => {
        const key = { tenant, endpoint: required(context, "endpoint") };
        const marked = await state.requestReplay(key, ids);
        context.output.out(
          context.output.json
            ? JSON.stringify({ marked })
            : `${marked} failed deliveries marked for replay; the instance delivering ${key.endpoint} sends them within seconds`,
        );
      });
    case "enable":
      return withState(config, async (state) => {
        const key = { tenant, endpoint: required(context, "endpoint") };
        const url = await state.disabledUrl(key);
        await state.setDisabled(key, undefined);
        context.output.out(
          context.output.json
            ? JSON.stringify({ wasDisabled: url !== undefined })
            : url === undefined
              ? `${key.endpoint} was not disabled`
              : `${key.endpoint} enabled again; deliveries resume from where they stopped`,
        );
      });
    case "test":
      return sendTest(context, config, tenant, required(context, "endpoint"));
    default:
      throw usageError("webhooks needs one of: failed, replay, enable, test");
  }
}

function serviceConfig(): Config {
  try {
    return loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) throw usageError(error.message);
    throw error;
  }
}

async function withState(
  config: Config,
  work: (state: WebhookStateStore) => Promise<void>,
): Promise<void> {
  let embedded: { db: DatabaseSync; writes: SqliteWriteBatcher } | undefined;
  const state = openWebhookState(
    config,
    () => {
      if (embedded === undefined) {
        const db = openSqliteDatabase(join(config.dataDir, "receipts.db"));
        embedded = { db, writes: new SqliteWriteBatcher(db) };
      }
      return embedded;
    },
    silentLogger,
  );
  try {
    await work(state);
  } finally {
    await state.close();
    embedded?.db.close();
  }
}

async function sendTest(
  context: CommandContext,
  config: Config,
  tenant: string,
  endpointId: string,
): Promise<void> {
  const registry = await TenantRegistry.open(config.tenants, silentLogger).catch(
    (error: unknown) => {
      throw usageError((error as Error).message);
    },
  );
  registry.close();
  const endpoint = registry.webhooks.get(tenant)?.find((e) => e.id === endpointId);
  if (endpoint === undefined) {
    throw usageError(`tenant ${tenant} has no webhook endpoint ${endpointId}`);
  }
  const event = testWebhookEvent(tenant, Date.now());
  const body = webhookBody(tenant, [event]);
  const id = webhookId(endpoint.id, [event]);
  const headers = signatureHeaders(id, Math.floor(Date.now() / 1000), body, endpoint.secrets);
  const sender = new WebhookSender(config.tenants.webhookUrls);
  try {
    const outcome = await sender.send(endpoint.url, headers, body, {
      timeoutMs: endpoint.timeoutMs,
      concurrency: 1,
    });
    const answer = outcome.kind === "retry" ? outcome.reason : String(outcome.status);
    context.output.out(
      context.output.json
        ? JSON.stringify({ webhookId: id, outcome: outcome.kind, answer })
        : `${id}: ${outcome.kind} (${answer})`,
    );
    if (outcome.kind !== "delivered") {
      throw new CliError(
        `the endpoint did not accept the test event (${answer})`,
        exitCodes.rpcError,
      );
    }
  } finally {
    sender.close();
  }
}
