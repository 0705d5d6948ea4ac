import type { MessageStore, PrivacyStore } from "../store/receipt-store.js";
import { type Caller, requireService } from "./caller.js";
import type { ChangeAnnouncer } from "./change-announcer.js";
import { invalidArgument } from "./errors.js";
import { limits } from "./limits.js";
import { pendingDeletion } from "./model.js";
import { requireId, requireIdList } from "./validate.js";

export interface MessageDeletionDeps {
  readonly store: Pick<MessageStore, "getMessages" | "deleteMessages"> &
    Pick<PrivacyStore, "deletePrivateReceiptsOf">;
  /** The receipts' announcer: a deletion reaches the change log through the same outbox. */
  readonly announcer: ChangeAnnouncer;
  readonly clock?: () => number;
}

/**
 * DeleteMessages: a message recalled or deleted by the messaging backend goes with its
 * receipts, counts and change-log entries, and its watchers hear of it. The store keeps the
 * deletion marker and a pending change per message with the deletion itself, so the update is
 * published even if this process dies right after (the announcer's sweep).
 */
export class MessageDeletion {
  readonly #store: MessageDeletionDeps["store"];
  readonly #announcer: ChangeAnnouncer;
  readonly #clock: () => number;

  constructor(deps: MessageDeletionDeps) {
    this.#store = deps.store;
    this.#announcer = deps.announcer;
    this.#clock = deps.clock ?? Date.now;
  }

  async deleteMessages(
    tenant: string,
    caller: Caller,
    request: { readonly conversationId: string; readonly messageIds: readonly string[] },
  ): Promise<{ deletedCount: number }> {
    // The messaging backend recalls messages; a user never deletes receipts.
    requireService(caller, "DeleteMessages");
    const conversationId = requireId("conversation_id", request.conversationId);
    const ids = requireIdList("message_ids", request.messageIds, limits.maxIdsPerReceiptCall);
    // Checked before anything is deleted: one id of another conversation changes nothing.
    const found = await this.#store.getMessages(tenant, ids);
    for (const [i, id] of ids.entries()) {
      const message = found.get(id);
      if (message !== undefined && message.conversationId !== conversationId) {
        throw invalidArgument(
          `message_ids[${i}]`,
          `message ${id} does not belong to conversation ${conversationId}`,
        );
      }
    }
    const deletedAt = this.#clock();
    const deleted = await this.#store.deleteMessages(tenant, conversationId, ids, deletedAt);
    // Private reads live apart from the ledger the deletion emptied (and are never logged).
    await this.#store.deletePrivateReceiptsOf(tenant, ids);
    if (deleted.length > 0) {
      const messages = deleted.map(({ messageId, senderId }) => ({ messageId, senderId }));
      this.#announcer.announce(
        tenant,
        [{ kind: "deletion", conversationId, messages, deletedAt }],
        deleted.map((message) => pendingDeletion(tenant, message, deletedAt)),
      );
    }
    return { deletedCount: deleted.length };
  }
}
