import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import {
  buildReceiptsClient,
  checkedBaseUrl,
  type Protocol,
  type ReceiptsClient,
  type ReceiptsClientOptions,
} from "./receipts-client.js";

export * from "./index.js";

/**
 * A client for browsers, over fetch: Connect (default; the stream works over
 * HTTP/1.1) or gRPC-Web. Give it a user token, never an API key.
 */
export function createReceiptsClient(options: ReceiptsClientOptions): ReceiptsClient {
  const baseUrl = checkedBaseUrl(options.baseUrl);
  return buildReceiptsClient(options, (protocol: Protocol, interceptors: Interceptor[]) =>
    webTransport(protocol, baseUrl, interceptors),
  );
}

function webTransport(protocol: Protocol, baseUrl: string, interceptors: Interceptor[]): Transport {
  switch (protocol) {
    case "connect":
      return createConnectTransport({ baseUrl, interceptors });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, interceptors });
    case "grpc":
      throw new TypeError(
        "createReceiptsClient: browsers cannot read gRPC's HTTP/2 trailers; use protocol connect or grpc-web",
      );
    default:
      throw new TypeError(
        `createReceiptsClient: protocol ${String(protocol)}: must be connect or grpc-web`,
      );
  }
}
