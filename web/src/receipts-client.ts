import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ReadReceiptService } from "../../gen/receipts/v1/receipts_pb.js";

export type ReceiptsClient = Client<typeof ReadReceiptService>;

/**
 * The page's client of the read-receipt service: the Connect protocol over
 * fetch, so that unary calls and the WatchReceipts stream both work over
 * HTTP/1.1 from another origin (the service answers the CORS preflights).
 */
export function createReceiptsClient(server: string, token: string): ReceiptsClient {
  return createClient(
    ReadReceiptService,
    createConnectTransport({
      baseUrl: server,
      interceptors: token === "" ? [] : [bearer(token)],
    }),
  );
}

/** Sends the user's token on every call. A page only ever holds a user token, never an API key. */
function bearer(token: string): Interceptor {
  return (next) => (request) => {
    request.header.set("Authorization", `Bearer ${token}`);
    return next(request);
  };
}
