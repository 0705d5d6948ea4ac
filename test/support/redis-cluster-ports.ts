/** A Redis Cluster node also listens on its port + 10000, for the cluster bus. */
export const busOffset = 10_000;

/**
 * Six ports for a test cluster: each free with its bus port free too, and no node's port the
 * bus port of another (node 35865's bus would take 45865 before node 45865 could bind it).
 */
export async function pickClusterPorts(
  candidate: () => Promise<number>,
  isFree: (port: number) => Promise<boolean>,
  count = 6,
): Promise<number[]> {
  const ports: number[] = [];
  for (let tries = 0; ports.length < count; tries++) {
    if (tries >= 1_000) throw new Error(`found only ${ports.length} of ${count} cluster ports`);
    const port = await candidate();
    const bus = port + busOffset;
    if (bus > 65_535) continue;
    const clashes = ports.some((p) => p === port || p === bus || p + busOffset === port);
    if (!clashes && (await isFree(bus))) ports.push(port);
  }
  return ports;
}
