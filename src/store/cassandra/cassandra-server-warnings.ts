import type { Client } from "cassandra-driver";
import type { Logger } from "../../logger.js";

/** One log line per table and kind of warning per this long at most. */
const logEveryMs = 60_000;

/** What Cassandra warned a client of, by the table it names and a kind. */
export interface ServerWarning {
  /** keyspace.table, or "" when the warning names none. */
  readonly table: string;
  /** "tombstones" (a read past tombstone_warn_threshold), "batch_size", or "other". */
  readonly kind: "tombstones" | "batch_size" | "other";
}

/**
 * Cassandra sends warnings with some answers (a read that passed `tombstone_warn_threshold`
 * tombstones, a batch over `batch_size_warn_threshold`): early news of a table about to fail
 * its reads. The driver only emits them as log events; this hands each to `onWarning` (the
 * metric) and logs them, at most once a minute per table and kind.
 */
export function forwardServerWarnings(
  client: Client,
  logger: Logger,
  onWarning?: (warning: ServerWarning) => void,
): void {
  const lastLogged = new Map<string, number>();
  client.on("log", (level: string, _source: string, message: string) => {
    if (level !== "warning" || !message.startsWith("Received warning")) return;
    const warning = serverWarningOf(message);
    onWarning?.(warning);
    const key = `${warning.kind} ${warning.table}`;
    const now = Date.now();
    if (now - (lastLogged.get(key) ?? Number.NEGATIVE_INFINITY) < logEveryMs) return;
    lastLogged.set(key, now);
    logger.warn({ ...warning, cassandra: message }, "Cassandra warned of a request");
  });
}

export function serverWarningOf(message: string): ServerWarning {
  const kind = /tombstone/i.test(message)
    ? "tombstones"
    : /batch/i.test(message) && /size/i.test(message)
      ? "batch_size"
      : "other";
  // The statement the driver quotes after the warning: its first table.
  const table = /\b(?:FROM|INTO|UPDATE)\s+([A-Za-z0-9_]+\.[A-Za-z0-9_]+)/i.exec(message)?.[1];
  return { table: table ?? "", kind };
}
