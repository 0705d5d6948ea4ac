// A page using the installed package through a bundler (Vite picks its browser build).
import { createReceiptsClient, ReceiptsError } from "@read-receipts/client";

const params = new URL(location.href).searchParams;
const client = createReceiptsClient({
  baseUrl: params.get("server"),
  protocol: params.get("protocol"),
  userToken: params.get("token"),
});
const events = [];
globalThis.events = events;

try {
  await client.receipts.getReceipts({ conversationId: "pk", messageIds: [""] });
} catch (error) {
  globalThis.typedError = {
    typed: error instanceof ReceiptsError,
    code: error.codeName,
    field: error.field,
  };
}

try {
  globalThis.grpcRefused = "no";
  createReceiptsClient({ baseUrl: params.get("server"), protocol: "grpc" });
} catch (error) {
  globalThis.grpcRefused = error.message;
}

for await (const event of client.watch(
  { conversationIds: ["pk"], senderId: "s" },
  { firstDelayMs: 100 },
)) {
  if (event.type === "receipt")
    events.push(`receipt:${event.update.receipt?.messageId}:${event.update.readerId}`);
  else if (event.type === "live") events.push(event.resumed ? "live:resumed" : "live");
  else if (event.type === "reread") events.push(`reread:${event.reason}`);
  else if (event.type === "reconnecting") events.push(`reconnecting:${event.error.codeName}`);
}
