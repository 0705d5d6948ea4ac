import { pino } from "pino";

export type Logger = pino.Logger;

export function createLogger(options: { level: string; pretty?: boolean }): Logger {
  return pino({ level: options.level, base: { service: "read-receipts" } });
}

/** A logger that drops everything, for tests that do not look at logs. */
export const silentLogger: Logger = pino({ level: "silent" });
