// Type-checked against the installed package's declarations: both services and the watch are typed.
import {
  Code,
  createReceiptsClient,
  type MessageReceipt,
  type ReceiptsClient,
  ReceiptsError,
  type WatchEvent,
} from "@read-receipts/client";

const client: ReceiptsClient = createReceiptsClient({
  baseUrl: "http://127.0.0.1:8080",
  protocol: "grpc",
  tokenProvider: async () => "token",
});

export async function counts(): Promise<MessageReceipt[]> {
  const added: number = (await client.membership.addMembers({ groupId: "g", userIds: ["u"] }))
    .addedCount;
  void added;
  try {
    return (await client.receipts.getReceipts({ conversationId: "g", messageIds: ["m"] })).receipts;
  } catch (error) {
    const typed = ReceiptsError.from(error);
    const field: string | undefined = typed.field;
    const wait: number | undefined = typed.retryAfterMs;
    if (typed.code === Code.InvalidArgument) throw new Error(`${field} ${wait}`);
    return [];
  }
}

export async function follow(): Promise<string> {
  for await (const event of client.watch({ conversationIds: ["g"] })) {
    const seen: WatchEvent = event;
    if (seen.type === "receipt") return seen.update.readerId;
  }
  return "";
}
