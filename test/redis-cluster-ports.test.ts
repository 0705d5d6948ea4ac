import { describe, expect, it } from "vitest";
import { pickClusterPorts } from "./support/redis-cluster-ports.js";

/** The test cluster's ports (test/support/redis-cluster.ts): a CI run failed on a clash. */
describe("ports for a test Redis Cluster", () => {
  const offered = (ports: number[]) => {
    let next = 0;
    return async () => ports[next++] ?? 20_000 + next;
  };
  const allFree = async () => true;

  it("never takes a port that another chosen node's cluster bus will listen on", async () => {
    const ports = await pickClusterPorts(
      offered([35865, 46691, 38757, 43117, 45865, 41353, 30001]),
      allFree,
    );
    expect(ports).toEqual([35865, 46691, 38757, 43117, 41353, 30001]);
  });

  it("never takes a port whose bus port is another chosen node's port", async () => {
    const ports = await pickClusterPorts(offered([45865, 35865, 1, 2, 3, 4, 5]), allFree);
    expect(ports).toEqual([45865, 1, 2, 3, 4, 5]);
  });

  it("skips a port whose bus port is taken, or beyond the last port", async () => {
    const taken = new Set([40001]);
    const ports = await pickClusterPorts(
      offered([30001, 60000, 30002, 30003, 30004, 30005, 30006]),
      async (port) => !taken.has(port),
    );
    expect(ports).toEqual([30002, 30003, 30004, 30005, 30006, 20008]);
  });
});
