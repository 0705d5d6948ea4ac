import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { MembershipService } from "../../gen/receipts/v1/membership_pb.js";
import { ReadReceiptService } from "../../gen/receipts/v1/receipts_pb.js";
import { usageError } from "./cli-error.js";

export const protocols = ["connect", "grpc", "grpc-web"] as const;
export type Protocol = (typeof protocols)[number];

export interface ConnectionOptions {
  readonly url: string;
  readonly protocol: Protocol;
  /** Sent as `Authorization: Bearer <token>` on every call when set. */
  readonly token: string | undefined;
}

export interface Clients {
  readonly receipts: Client<typeof ReadReceiptService>;
  readonly membership: Client<typeof MembershipService>;
}

/** Clients of both services at `url`, over the chosen protocol. */
export function connect(options: ConnectionOptions): Clients {
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw usageError(`--url ${options.url}: not a URL like http://127.0.0.1:8080`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw usageError(`--url ${options.url}: must start with http:// or https://`);
  }
  const baseUrl = options.url.replace(/\/+$/, "");
  const interceptors: Interceptor[] = [];
  const token = options.token;
  if (token !== undefined) {
    interceptors.push((next) => (request) => {
      request.header.set("authorization", `Bearer ${token}`);
      return next(request);
    });
  }
  let transport: Transport;
  switch (options.protocol) {
    case "grpc":
      transport = createGrpcTransport({ baseUrl, interceptors });
      break;
    case "grpc-web":
      transport = createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors });
      break;
    default:
      transport = createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors });
  }
  return {
    receipts: createClient(ReadReceiptService, transport),
    membership: createClient(MembershipService, transport),
  };
}
