import type { Interceptor, Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import {
  buildReceiptsClient,
  checkedBaseUrl,
  type Protocol,
  type ReceiptsClient,
  type ReceiptsClientOptions,
} from "./receipts-client.js";

export * from "./index.js";

/**
 * A client for Node backends, over HTTP/2: gRPC, Connect or gRPC-Web
 * (`protocol`, default `connect`), with typed errors, retries of calls safe to
 * retry, and `watch`.
 */
export function createReceiptsClient(options: ReceiptsClientOptions): ReceiptsClient {
  const baseUrl = checkedBaseUrl(options.baseUrl);
  return buildReceiptsClient(options, (protocol: Protocol, interceptors: Interceptor[]) =>
    nodeTransport(protocol, baseUrl, interceptors),
  );
}

function nodeTransport(
  protocol: Protocol,
  baseUrl: string,
  interceptors: Interceptor[],
): Transport {
  switch (protocol) {
    case "grpc":
      return createGrpcTransport({ baseUrl, interceptors });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion: "2", interceptors });
    case "connect":
      return createConnectTransport({ baseUrl, httpVersion: "2", interceptors });
    default:
      throw new TypeError(
        `createReceiptsClient: protocol ${String(protocol)}: must be connect, grpc or grpc-web`,
      );
  }
}
