import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { type ReceiptsClientOptions, receiptsClientFactory } from "./receipts-client.js";

export * from "./index.js";

export interface NodeReceiptsClientOptions extends ReceiptsClientOptions {
  /**
   * Of Connect and gRPC-Web (gRPC is always HTTP/2): `1.1` (default) passes
   * every proxy, `2` multiplexes the calls over one connection.
   */
  readonly httpVersion?: "1.1" | "2";
}

/**
 * A client for Node backends: gRPC, Connect or gRPC-Web (`protocol`, default
 * `connect`), with typed errors, retries of calls safe to retry, and `watch`.
 */
export const createReceiptsClient = receiptsClientFactory<NodeReceiptsClientOptions>(
  (protocol, transport, options) => {
    const httpVersion = options.httpVersion ?? "1.1";
    switch (protocol) {
      case "grpc":
        return createGrpcTransport(transport);
      case "grpc-web":
        return createGrpcWebTransport({ ...transport, httpVersion });
      case "connect":
        return createConnectTransport({ ...transport, httpVersion });
      default:
        throw new TypeError(
          `createReceiptsClient: protocol ${String(protocol)}: must be connect, grpc or grpc-web`,
        );
    }
  },
);
