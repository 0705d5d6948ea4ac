import type { FirstPageRequest } from "../store/receipt-store.js";
import type {
  MessageReadMembers,
  MessageReceipt,
  Page,
  ReadFilter,
  ReadMember,
  TrackedMessage,
} from "./model.js";
import { encodePageToken } from "./page-token.js";

/**
 * Pages of ListReadMembers and the first pages of BatchGetReadMembers, cut the same way, so
 * that a batch's page token goes on with ListReadMembers.
 */

/** The listing a ListReadMembers page token belongs to. */
export const readMembersScope = (messageId: string, filter: ReadFilter): string =>
  `read-members/${messageId}/${filter}`;

/** A page of `size` from `rows`, read with one extra row that tells whether another follows. */
export function pageOf(rows: readonly ReadMember[], size: number, scope: string): Page<ReadMember> {
  const items = rows.slice(0, size);
  const last = items.at(-1);
  const nextPageToken =
    rows.length > size && last !== undefined ? encodePageToken(scope, last.userId) : "";
  return { items, nextPageToken };
}

/**
 * The first pages a batch has to read from the store: none for a side its counts show empty,
 * none for C2C (the receiver is on one side, known from the counts), each message once.
 */
export function firstPagesToRead(receipts: readonly MessageReceipt[]): FirstPageRequest[] {
  const wanted = new Map<string, FirstPageRequest>();
  for (const { message, readCount, unreadCount } of receipts) {
    if (message.conversationType !== "group") continue;
    if (readCount > 0) wanted.set(pageKey(message, "read"), { message, filter: "read" });
    if (unreadCount > 0) wanted.set(pageKey(message, "unread"), { message, filter: "unread" });
  }
  return [...wanted.values()];
}

/** Each receipt with its first pages, from the rows read for `read` (one extra row each). */
export function firstPages(
  receipts: readonly MessageReceipt[],
  read: readonly FirstPageRequest[],
  rows: readonly (readonly ReadMember[])[],
  size: number,
): MessageReadMembers[] {
  const rowsOf = new Map(read.map((r, i) => [pageKey(r.message, r.filter), rows[i] ?? []]));
  const page = (message: TrackedMessage, filter: ReadFilter): Page<ReadMember> =>
    pageOf(
      rowsOf.get(pageKey(message, filter)) ?? [],
      size,
      readMembersScope(message.messageId, filter),
    );
  return receipts.map((receipt) => {
    const { message } = receipt;
    if (message.conversationType === "c2c") return c2cPages(receipt);
    return { receipt, read: page(message, "read"), unread: page(message, "unread") };
  });
}

const pageKey = (message: TrackedMessage, filter: ReadFilter): string =>
  `${filter}\u0000${message.messageId}`;

const lastPage = (items: readonly ReadMember[]): Page<ReadMember> => ({ items, nextPageToken: "" });

/** A C2C audience is its receiver: on one side or the other, with the read time if read. */
function c2cPages(receipt: MessageReceipt): MessageReadMembers {
  const userId = receipt.message.receiverId;
  if (!receipt.receiverRead) return { receipt, read: lastPage([]), unread: lastPage([{ userId }]) };
  const readAt = receipt.receiverReadAt;
  const member = readAt === undefined ? { userId } : { userId, readAt };
  return { receipt, read: lastPage([member]), unread: lastPage([]) };
}
