import type { ReceiptVisibility, StoredReceiptSettings } from "./receipt-store.js";

/** A user's setting rows as both backends keep them: conversation "" is the user's default. */
export function storedReceiptSettings(
  rows: Iterable<{ readonly conversationId: string; readonly visibility: ReceiptVisibility }>,
): StoredReceiptSettings {
  const conversations = new Map<string, ReceiptVisibility>();
  let defaultVisibility: ReceiptVisibility | undefined;
  for (const { conversationId, visibility } of rows) {
    if (conversationId === "") defaultVisibility = visibility;
    else conversations.set(conversationId, visibility);
  }
  return { defaultVisibility, conversations };
}
