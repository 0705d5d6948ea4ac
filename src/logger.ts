import { pino } from "pino";
import pretty from "pino-pretty";

export type Logger = pino.Logger;

/**
 * JSON lines for machines (log shippers, tests), or with `pretty` coloured lines with levels
 * by name and local times for a person at a terminal.
 */
export function createLogger(options: { level: string; pretty?: boolean }): Logger {
  const settings = { level: options.level, base: { service: "read-receipts" } };
  if (options.pretty !== true) return pino(settings);
  // Synchronous, so a line is out before the process exits (a refused start, a shutdown).
  return pino(
    settings,
    pretty({ sync: true, ignore: "pid,hostname,service", translateTime: "SYS:HH:MM:ss.l" }),
  );
}

/** A logger that drops everything, for tests that do not look at logs. */
export const silentLogger: Logger = pino({ level: "silent" });
