import type { MessageStore, PrivacyStore } from "../store/receipt-store.js";
import type { PendingOutcome } from "./change-announcer.js";
import type { PendingChange } from "./model.js";

type PendingDeletion = Extract<PendingChange, { kind: "deletion" }>;
export type PendingFact = Exclude<PendingChange, { kind: "deletion" }>;

/**
 * Describes pending changes for the outbox sweep: deletions here, the rest by `others`, in the
 * order given. A pending deletion is the trace of a DeleteMessages call that may have been cut
 * short, so its removal is done again first (a no-op when complete); it is announced once the
 * message's deletion marker is stored, and left for later while it is not (the call may still
 * be running, or failed before deleting anything and was not answered OK).
 */
export async function describeDeletions(
  store: Pick<MessageStore, "deleteMessages" | "deletedMessages"> &
    Pick<PrivacyStore, "deletePrivateReceiptsOf">,
  tenant: string,
  pending: readonly PendingChange[],
  others: (pending: readonly PendingFact[]) => Promise<readonly PendingOutcome[]>,
): Promise<PendingOutcome[]> {
  const facts = pending.filter((p): p is PendingFact => p.kind !== "deletion");
  const deletions = pending.filter((p): p is PendingDeletion => p.kind === "deletion");
  const factOutcomes = facts.length === 0 ? [] : await others(facts);
  const deletionOutcomes = new Map<PendingDeletion, PendingOutcome>();
  for (const [conversationId, of] of Map.groupBy(deletions, (d) => d.conversationId)) {
    const ids = of.map((d) => d.messageId);
    const deletedAt = Math.min(...of.map((d) => d.deletedAt));
    await store.deleteMessages(tenant, conversationId, ids, deletedAt);
    await store.deletePrivateReceiptsOf(tenant, ids);
    const markers = await store.deletedMessages(tenant, ids);
    for (const deletion of of) {
      const { messageId, senderId } = deletion;
      deletionOutcomes.set(
        deletion,
        markers.has(messageId)
          ? {
              kind: "announce",
              change: {
                kind: "deletion",
                conversationId,
                messages: [{ messageId, senderId }],
                deletedAt: deletion.deletedAt,
              },
            }
          : { kind: "not-stored" },
      );
    }
  }
  let nextFact = 0;
  return pending.map((p) =>
    p.kind === "deletion"
      ? (deletionOutcomes.get(p) as PendingOutcome)
      : (factOutcomes[nextFact++] ?? { kind: "not-stored" }),
  );
}
