import type { ReadMember } from "../domain/model.js";
import { mapConcurrently } from "./map-concurrently.js";
import type {
  FirstPageRequest,
  MembershipAt,
  MembershipHistory,
  MembershipProbe,
  ReceiptLedger,
} from "./receipt-store.js";

/**
 * Port methods a backend answers from its other port methods, the same way in every backend;
 * `concurrency` is how many of the underlying calls it keeps in flight.
 */

/** listFirstPages: each page as listReaders or listUnreadMembers answers it from the start. */
export function firstPagesOf(
  store: Pick<ReceiptLedger, "listReaders"> & Pick<MembershipHistory, "listUnreadMembers">,
  tenant: string,
  pages: readonly FirstPageRequest[],
  limit: number,
  concurrency: number,
): Promise<ReadMember[][]> {
  return mapConcurrently(pages, concurrency, async ({ message, filter }) =>
    filter === "read"
      ? store.listReaders(tenant, message, undefined, limit)
      : (await store.listUnreadMembers(tenant, message, undefined, limit)).map((userId) => ({
          userId,
        })),
  );
}

/** membershipAt from memberCountAt and wasMemberAt, probe by probe. */
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
