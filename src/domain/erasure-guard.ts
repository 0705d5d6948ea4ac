import type { UserDataStore } from "../store/user-data-store.js";
import { ReceiptError } from "./errors.js";

/**
 * Refuses new data for users whose erasure is under way (receipts, horizons, memberships,
 * messages): what an erasure already passed would otherwise be left behind. Once the erasure
 * is done the id is accepted again, as a new user.
 */
export async function refuseUsersBeingErased(
  store: Pick<UserDataStore, "erasureOf">,
  tenant: string,
  users: readonly { readonly userId: string; readonly field: string }[],
): Promise<void> {
  const unique = [...new Map(users.map((u) => [u.userId, u])).values()];
  const records = await Promise.all(unique.map((u) => store.erasureOf(tenant, u.userId)));
  const erasing = unique.find((_, i) => records[i]?.state === "erasing");
  if (erasing !== undefined) {
    throw new ReceiptError(
      "failed_precondition",
      `user ${erasing.userId} is being erased; nothing new is stored for it until the erasure is done`,
      erasing.field,
    );
  }
}
