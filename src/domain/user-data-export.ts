import type { PrivacyStore } from "../store/receipt-store.js";
import type { UserDataRecord, UserDataStore } from "../store/user-data-store.js";
import { type Caller, exportedUserOf } from "./caller.js";
import { requireId } from "./validate.js";

const privatePage = 500;

/**
 * The right of access (ExportUserData): everything stored about one user, read a page at a
 * time, so that a user with a million receipts streams rather than loads. The backend's
 * records first, then the user's receipt settings and private reads.
 */
export async function* exportUserData(
  store: Pick<UserDataStore, "exportUserData"> &
    Pick<PrivacyStore, "getReceiptSettings" | "listPrivateReceipts">,
  tenant: string,
  caller: Caller,
  request: { userId: string },
): AsyncIterable<UserDataRecord> {
  const userId = requireId("user_id", exportedUserOf(caller, request.userId));
  yield* store.exportUserData(tenant, userId);
  const settings = await store.getReceiptSettings(tenant, userId);
  if (settings.defaultVisibility !== undefined) {
    yield { kind: "receipt_setting", conversationId: "", visibility: settings.defaultVisibility };
  }
  for (const [conversationId, visibility] of settings.conversations) {
    yield { kind: "receipt_setting", conversationId, visibility };
  }
  for (let after: string | undefined; ; ) {
    const page = await store.listPrivateReceipts(tenant, userId, after, privatePage);
    for (const read of page) {
      yield {
        kind: "private_receipt",
        conversationId: read.conversationId,
        messageId: read.messageId,
        readAt: read.readAt,
      };
    }
    if (page.length < privatePage) return;
    after = page.at(-1)?.messageId;
  }
}
