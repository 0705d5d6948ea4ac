// A Node backend using the installed package, as its users write it (plain JavaScript).
// Prints one JSON line per thing it sees; the test drives the service around it.
import { ConversationType, createReceiptsClient, ReceiptsError } from "@read-receipts/client";

const { BASE_URL, PROTOCOL, API_KEY, USER_TOKEN } = process.env;
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

const backend = createReceiptsClient({ baseUrl: BASE_URL, protocol: PROTOCOL, apiKey: API_KEY });
try {
  await backend.receipts.trackMessages({
    messages: [
      {
        conversationId: "pk",
        conversationType: ConversationType.GROUP,
        messageId: "",
        senderId: "s",
      },
    ],
  });
} catch (error) {
  print({
    typedError: error instanceof ReceiptsError,
    code: error.codeName,
    field: error.field,
  });
}

const sender = createReceiptsClient({
  baseUrl: BASE_URL,
  protocol: PROTOCOL,
  userToken: USER_TOKEN,
});
for await (const event of sender.watch(
  { conversationIds: ["pk"], senderId: "s" },
  { firstDelayMs: 100 },
)) {
  switch (event.type) {
    case "receipt":
      print({
        type: "receipt",
        messageId: event.update.receipt?.messageId,
        readerId: event.update.readerId,
      });
      break;
    case "live":
      print({ type: "live", resumed: event.resumed });
      break;
    case "reread": {
      const { receipts } = await sender.receipts.getReceipts({
        conversationId: "pk",
        messageIds: ["pk-0"],
      });
      print({ type: "reread", reason: event.reason, readCount: receipts[0]?.readCount });
      break;
    }
    case "reconnecting":
      print({
        type: "reconnecting",
        code: event.error.codeName,
        hasToken: event.resumeToken !== "",
      });
      break;
  }
}
