import type { UserDataRecord, UserDataStore } from "../store/user-data-store.js";
import { requireId } from "./validate.js";

/**
 * The right of access (ExportUserData): everything stored about one user, read a page at a
 * time, so that a user with a million receipts streams rather than loads.
 */
export async function* exportUserData(
  store: Pick<UserDataStore, "exportUserData">,
  tenant: string,
  request: { userId: string },
): AsyncIterable<UserDataRecord> {
  const userId = requireId("user_id", request.userId);
  yield* store.exportUserData(tenant, userId);
}
