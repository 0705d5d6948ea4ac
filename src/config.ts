/**
 * Configuration, read from the environment once at start and validated as a
 * whole: every bad variable is reported, not just the first.
 */
export interface Config {
  readonly host: string;
  readonly port: number;
  readonly store: "embedded";
  readonly dataDir: string;
  readonly logLevel: string;
  readonly watch: {
    readonly retentionMs: number;
    readonly heartbeatMs: number;
    readonly bufferLimit: number;
    readonly maxStreams: number;
  };
  readonly shutdownGraceMs: number;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
}

const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export function loadConfig(env: Readonly<Record<string, string | undefined>>): Config {
  const problems: string[] = [];
  const text = (name: string, fallback: string): string => {
    const value = env[name];
    return value === undefined || value === "" ? fallback : value;
  };
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === "") return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${name}=${raw}: must be a whole number from ${min} to ${max}`);
      return fallback;
    }
    return value;
  };
  const oneOf = <T extends string>(name: string, fallback: T, allowed: readonly T[]): T => {
    const value = text(name, fallback);
    if (!allowed.includes(value as T)) {
      problems.push(`${name}=${value}: must be one of ${allowed.join(", ")}`);
      return fallback;
    }
    return value as T;
  };

  const config: Config = {
    host: text("RECEIPTS_HOST", "127.0.0.1"),
    port: integer("RECEIPTS_PORT", 8080, 0, 65_535),
    store: oneOf("RECEIPTS_STORE", "embedded", ["embedded"] as const),
    dataDir: text("RECEIPTS_DATA_DIR", ".data"),
    logLevel: oneOf("RECEIPTS_LOG_LEVEL", "info", logLevels),
    watch: {
      retentionMs: integer("RECEIPTS_WATCH_RETENTION_SECONDS", 86_400, 60, 30 * 86_400) * 1000,
      heartbeatMs: integer("RECEIPTS_WATCH_HEARTBEAT_SECONDS", 15, 1, 3_600) * 1000,
      bufferLimit: integer("RECEIPTS_WATCH_BUFFER", 1_000, 1, 1_000_000),
      maxStreams: integer("RECEIPTS_MAX_STREAMS", 100_000, 1, 10_000_000),
    },
    shutdownGraceMs: integer("RECEIPTS_SHUTDOWN_GRACE_SECONDS", 10, 0, 3_600) * 1000,
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}
