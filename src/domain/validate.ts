import { invalidArgument } from "./errors.js";
import { limits } from "./limits.js";

// Ids are opaque to us but end up in keys, logs and tokens: keep them printable and bounded.
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const controlCharacters = /[\u0000-\u001f\u007f]/;

export function requireId(field: string, value: string): string {
  if (value.length === 0) throw invalidArgument(field, "must not be empty");
  if (value.length > limits.maxIdLength) {
    throw invalidArgument(field, `must be at most ${limits.maxIdLength} characters`);
  }
  if (controlCharacters.test(value))
    throw invalidArgument(field, "must not contain control characters");
  return value;
}

export function optionalId(field: string, value: string): string | undefined {
  return value === "" ? undefined : requireId(field, value);
}

export function requireIdList(field: string, values: readonly string[], max: number): string[] {
  if (values.length === 0) throw invalidArgument(field, "must not be empty");
  if (values.length > max) {
    throw invalidArgument(field, `must hold at most ${max} ids, got ${values.length}`);
  }
  for (const [index, value] of values.entries()) requireId(`${field}[${index}]`, value);
  return [...values];
}

/** Zero means the default; larger than the cap is served at the cap (AIP-158). */
export function pageSize(requested: number): number {
  if (requested === 0) return limits.defaultPageSize;
  return Math.min(requested, limits.maxPageSize);
}

export function requireTime(field: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(field, "must be a valid time at or after 1970-01-01T00:00:00Z");
  }
  return value;
}
