import { mapConcurrently } from "./map-concurrently.js";
import type { MembershipAt, MembershipHistory, MembershipProbe } from "./receipt-store.js";

/**
 * membershipAt from memberCountAt and wasMemberAt, probe by probe, `concurrency` probes at
 * once: how a backend answers when it has nothing better (no memory of the group).
 */
export function membershipAtEachProbe(
  history: Pick<MembershipHistory, "memberCountAt" | "wasMemberAt">,
  tenant: string,
  groupId: string,
  probes: readonly MembershipProbe[],
  concurrency: number,
): Promise<MembershipAt[]> {
  return mapConcurrently(probes, concurrency, async ({ userId, at }) => ({
    memberCount: await history.memberCountAt(tenant, groupId, at),
    wasMember: (await history.wasMemberAt(tenant, groupId, userId, [at]))[0] === true,
  }));
}
