import type { TrackedMessage } from "../../domain/model.js";
import type { MembershipHistory } from "../receipt-store.js";
import type { CassandraMembershipHistory } from "./cassandra-membership-history.js";
import type { CassandraReceiptLedger } from "./cassandra-receipt-ledger.js";

/**
 * Candidates checked against the readers partition at once when listing
 * unread members: a page's worth first (most members of a large group have
 * not read a message), twice as many each time a step comes up short.
 */
const maxUnreadBatch = 2_000;

/**
 * listUnreadMembers, the one query that needs two concerns: the members at the message's
 * sent_at (membership history) minus its readers (the receipt ledger). Members and readers
 * are both ordered by user id, so they are compared range by range.
 */
export function unreadMembersOf(
  history: CassandraMembershipHistory,
  ledger: CassandraReceiptLedger,
): MembershipHistory["listUnreadMembers"] {
  return async (
    tenant: string,
    message: TrackedMessage,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<string[]> => {
    const unread: string[] = [];
    let batch: string[] = [];
    let batchSize = limit + 16;
    let checkedThrough = afterUserId ?? "";
    const check = async (): Promise<void> => {
      const last = batch.at(-1);
      if (last === undefined) return;
      const readers = await ledger.readersBetween(tenant, message.messageId, checkedThrough, last);
      for (const userId of batch) {
        if (!readers.has(userId) && unread.length < limit) unread.push(userId);
      }
      checkedThrough = last;
      batch = [];
      batchSize = Math.min(batchSize * 2, maxUnreadBatch);
    };
    const { conversationId, sentAt } = message;
    const members = history.membersAt(tenant, conversationId, sentAt, afterUserId, batchSize);
    for await (const userId of members) {
      if (userId === message.senderId) continue;
      batch.push(userId);
      if (batch.length >= batchSize) {
        await check();
        if (unread.length >= limit) return unread;
      }
    }
    await check();
    return unread;
  };
}
