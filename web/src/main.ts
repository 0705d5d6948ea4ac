import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  Code,
  createReceiptsClient,
  type MessageReceipt,
  type ReceiptsClient,
  ReceiptsError,
} from "../../client/src/browser.js";
import { ChatView, renderProblem } from "./chat-view.js";
import { loadHistory } from "./conversation-history.js";
import { type Counts, MemberSheet } from "./member-sheet.js";
import { readPageParams } from "./page-params.js";
import { People } from "./people.js";
import { ReadTracker } from "./read-tracker.js";
import { maxIdsPerCall, ReceiptBatcher } from "./receipt-batcher.js";
import { ReceiptStream } from "./receipt-stream.js";

/** The page's composition root: reads the URL, loads the conversation and wires the parts. */
async function main(root: HTMLElement): Promise<void> {
  const parsed = readPageParams(location.href);
  if (!parsed.ok) {
    renderProblem(root, "This chat link is incomplete", parsed.problems);
    return;
  }
  const { user, conversation, server, token, historyUrl, pageSize } = parsed.params;
  let history: Awaited<ReturnType<typeof loadHistory>>;
  try {
    history = await loadHistory(historyUrl);
  } catch (error) {
    renderProblem(root, "Could not open the conversation", [String(error)]);
    return;
  }
  const people = new People(history.people);
  document.title = `${history.conversation.title} · ${people.firstName(user)}`;

  // The page only ever holds a user token, never an API key.
  const client = createReceiptsClient({
    baseUrl: server,
    protocol: "connect",
    userToken: token === "" ? undefined : token,
  });
  const counts = new Map<string, Counts>();
  const sheet = new MemberSheet({ client, conversationId: conversation, people, pageSize });
  document.body.append(sheet.element);
  const view = new ChatView(root, {
    history,
    people,
    me: user,
    onOpenReceipts: (message) => {
      const known = counts.get(message.id);
      if (known !== undefined) sheet.open(message, known);
    },
    onMarkAllRead: () => void markAllRead(),
  });
  const setCounts = (receipt: MessageReceipt) => {
    const value = { read: receipt.readCount, unread: receipt.unreadCount };
    counts.set(receipt.messageId, value);
    view.setCounts(receipt.messageId, value);
  };

  const mine = new Set(history.messages.filter((m) => m.senderId === user).map((m) => m.id));
  const stream = new ReceiptStream({
    client,
    conversationId: conversation,
    senderId: user,
    onUpdate: (update) => {
      const receipt = update.receipt;
      if (receipt === undefined || !mine.has(receipt.messageId)) return;
      // A receipt only ever adds a reader: a lower count is older than the counts already shown.
      if (receipt.readCount < (counts.get(receipt.messageId)?.read ?? 0)) return;
      setCounts(receipt);
      sheet.applyReceipt(update);
    },
    onFresh: async () => {
      for (const receipt of await currentReceipts(client, conversation, [...mine], (id) => {
        view.setNoReceipts(id);
      })) {
        setCounts(receipt);
      }
    },
    onState: (state) => view.setConnection(state),
  });

  const receipts = new ReceiptBatcher({
    send: async (messageIds) => {
      await client.receipts.sendReceipts({
        conversationId: conversation,
        readerId: user,
        messageIds: [...messageIds],
      });
    },
    onAcknowledged: (ids) => view.markAcknowledged(ids),
  });
  const tracker = new ReadTracker(view.timeline, receipts);

  async function markAllRead(): Promise<void> {
    view.setMarkAllBusy(true);
    try {
      const result = await client.receipts.markConversationRead({
        conversationId: conversation,
        readerId: user,
      });
      const upTo = result.readUpTo === undefined ? new Date() : timestampDate(result.readUpTo);
      receipts.markAcknowledged(
        [...view.othersMessages()].filter(([m]) => m.sentAt <= upTo).map(([m]) => m.id),
      );
      view.toast(
        result.markedCount === 0
          ? "You're all caught up"
          : `Marked ${result.markedCount} ${result.markedCount === 1 ? "message" : "messages"} as read`,
      );
    } catch (error) {
      view.toast(`Could not mark as read: ${ReceiptsError.from(error).rawMessage}`, "error");
    } finally {
      view.setMarkAllBusy(false);
    }
  }

  view.scrollToLatest();
  for (const [message, element] of view.othersMessages()) tracker.observe(element, message.id);
  stream.start();
}

/**
 * GetReceipts for the user's messages, 100 ids per call. A message the
 * messaging backend never tracked (it did not ask for receipts) is reported
 * and left out instead of failing the whole view.
 */
async function currentReceipts(
  client: ReceiptsClient,
  conversationId: string,
  messageIds: readonly string[],
  onUntracked: (messageId: string) => void,
): Promise<MessageReceipt[]> {
  const receipts: MessageReceipt[] = [];
  const pending = [...messageIds];
  while (pending.length > 0) {
    const batch = pending.splice(0, maxIdsPerCall);
    for (;;) {
      if (batch.length === 0) break;
      try {
        receipts.push(
          ...(await client.receipts.getReceipts({ conversationId, messageIds: batch })).receipts,
        );
        break;
      } catch (error) {
        const failure = ReceiptsError.from(error);
        const field = failure.field ?? "";
        const index = Number(/^message_ids\[(\d+)\]$/.exec(field)?.[1] ?? Number.NaN);
        if (failure.code !== Code.NotFound || !Number.isInteger(index)) throw failure;
        const [untracked] = batch.splice(index, 1);
        if (untracked !== undefined) onUntracked(untracked);
      }
    }
  }
  return receipts;
}

const root = document.getElementById("app");
if (root !== null) void main(root);
