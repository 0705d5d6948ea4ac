import type { ReceiptLedger } from "../store/receipt-store.js";
import type { PendingOutcome } from "./change-announcer.js";
import type { PendingFact } from "./deletion-outcomes.js";
import { privateChange } from "./model.js";
import type { ReceiptParts } from "./receipt-parts.js";
import type { ReceiptReads } from "./receipt-reads.js";

/**
 * Pending changes as they stand now, for the announcer's sweep: a receipt
 * with the message's current count (the log keeps counts from going down).
 */
export async function describePending(
  parts: Pick<ReceiptParts, "store" | "privacy">,
  reads: Pick<ReceiptReads, "describe">,
  tenant: string,
  pending: readonly PendingFact[],
): Promise<PendingOutcome[]> {
  const { store, privacy } = parts;
  const receipts = pending.flatMap((p) => (p.kind === "receipt" ? [p] : []));
  const messages = await store.getMessages(
    tenant,
    receipts.map((r) => r.messageId),
  );
  const stored = await storedReads(store, tenant, receipts);
  const receiptsNow = new Map(
    (await reads.describe(tenant, [...messages.values()])).map((r) => [r.message.messageId, r]),
  );
  const outcomes: PendingOutcome[] = [];
  for (const change of pending) {
    if (change.kind === "horizon") {
      const { conversationId, readerId, readUpTo } = change;
      const horizon = await store.getHorizon(tenant, conversationId, readerId);
      if (horizon === undefined || horizon < readUpTo) {
        outcomes.push({ kind: "not-stored" });
        continue;
      }
      const hidden = await privacy.hidesInConversation(tenant, readerId, conversationId);
      outcomes.push({
        kind: "announce",
        change: {
          kind: "horizon",
          conversationId,
          readerId,
          readUpTo,
          ...(hidden && privateChange),
        },
      });
      continue;
    }
    const receipt = receiptsNow.get(change.messageId);
    if (receipt === undefined) outcomes.push({ kind: "gone" });
    else if (!stored.has(readKey(change.messageId, change.readerId))) {
      outcomes.push({ kind: "not-stored" });
    } else {
      outcomes.push({
        kind: "announce",
        change: { kind: "receipt", receipt, readerId: change.readerId, readAt: change.readAt },
      });
    }
  }
  return outcomes;
}

const readKey = (messageId: string, readerId: string): string => `${messageId}\u0000${readerId}`;

/**
 * Which of the pending receipts the ledger holds, as readKey()s. Settled, not only looked up:
 * the call that wrote them may have died before counting them.
 */
async function storedReads(
  store: Pick<ReceiptLedger, "settleReceipts">,
  tenant: string,
  receipts: readonly { readonly messageId: string; readonly readerId: string }[],
): Promise<Set<string>> {
  const stored = new Set<string>();
  for (const [readerId, of] of Map.groupBy(receipts, (r) => r.readerId)) {
    const read = await store.settleReceipts(
      tenant,
      readerId,
      of.map((r) => r.messageId),
    );
    for (const messageId of read) stored.add(readKey(messageId, readerId));
  }
  return stored;
}
