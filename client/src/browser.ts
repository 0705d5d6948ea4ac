import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { receiptsClientFactory } from "./receipts-client.js";

export * from "./index.js";

/**
 * A client for browsers, over fetch: Connect (default; the stream works over
 * HTTP/1.1) or gRPC-Web. Give it a user token, never an API key.
 */
export const createReceiptsClient = receiptsClientFactory((protocol, transport) => {
  switch (protocol) {
    case "connect":
      return createConnectTransport(transport);
    case "grpc-web":
      return createGrpcWebTransport(transport);
    case "grpc":
      throw new TypeError(
        "createReceiptsClient: browsers cannot read gRPC's HTTP/2 trailers; use protocol connect or grpc-web",
      );
    default:
      throw new TypeError(
        `createReceiptsClient: protocol ${String(protocol)}: must be connect or grpc-web`,
      );
  }
});
