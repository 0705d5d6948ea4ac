/**
 * Positions of the Redis change feed are stream ids, `<ms>-<seq>`, each part a 64-bit
 * unsigned number; they are compared as numbers, not as strings.
 */
const maxPart = (1n << 64n) - 1n;
const positionPattern = /^(\d{1,20})-(\d{1,20})$/;

/** Negative when a is before b, 0 when equal, positive when after; throws on a malformed id. */
export function compareStreamIds(a: string, b: string): number {
  const [aMs, aSeq] = parseStreamId(a);
  const [bMs, bSeq] = parseStreamId(b);
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  if (aSeq !== bSeq) return aSeq < bSeq ? -1 : 1;
  return 0;
}

export function isStreamId(position: string): boolean {
  const match = positionPattern.exec(position);
  return (
    match !== null && BigInt(match[1] as string) <= maxPart && BigInt(match[2] as string) <= maxPart
  );
}

function parseStreamId(position: string): [bigint, bigint] {
  const match = positionPattern.exec(position);
  if (match === null) throw new Error(`not a stream position: ${position}`);
  return [BigInt(match[1] as string), BigInt(match[2] as string)];
}
