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
export function createReceiptsClient(options: NodeReceiptsClientOptions): ReceiptsClient {
  const baseUrl = checkedBaseUrl(options.baseUrl);
  const httpVersion = options.httpVersion ?? "1.1";
  return buildReceiptsClient(options, (protocol: Protocol, interceptors: Interceptor[]) =>
    nodeTransport(protocol, { baseUrl, httpVersion, interceptors }),
  );
}

function nodeTransport(
  protocol: Protocol,
  options: { baseUrl: string; httpVersion: "1.1" | "2"; interceptors: Interceptor[] },
): Transport {
  switch (protocol) {
    case "grpc":
      return createGrpcTransport({ baseUrl: options.baseUrl, interceptors: options.interceptors });
    case "grpc-web":
      return createGrpcWebTransport(options);
    case "connect":
      return createConnectTransport(options);
    default:
      throw new TypeError(
        `createReceiptsClient: protocol ${String(protocol)}: must be connect, grpc or grpc-web`,
      );
  }
}
