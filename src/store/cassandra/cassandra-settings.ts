/** Settings of the Cassandra backend that configuration validates; no driver import here. */

export type Consistency = "ONE" | "LOCAL_ONE" | "QUORUM" | "LOCAL_QUORUM" | "EACH_QUORUM" | "ALL";
export type SerialConsistency = "SERIAL" | "LOCAL_SERIAL";

export const consistencyLevels: readonly Consistency[] = [
  "ONE",
  "LOCAL_ONE",
  "QUORUM",
  "LOCAL_QUORUM",
  "EACH_QUORUM",
  "ALL",
];

const keyspacePattern = /^[a-z][a-z0-9_]{0,47}$/;

/** Keyspace names are spliced into CQL: only plain lower-case identifiers. */
export function isValidKeyspace(name: string): boolean {
  return keyspacePattern.test(name);
}
