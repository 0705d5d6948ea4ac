import { createReceiptsClient, type ReceiptsClient } from "../../client/src/node.js";
import { usageError } from "./cli-error.js";

export const protocols = ["connect", "grpc", "grpc-web"] as const;
export type Protocol = (typeof protocols)[number];

export interface ConnectionOptions {
  readonly url: string;
  readonly protocol: Protocol;
  /** Sent as `Authorization: Bearer <token>` on every call when set. */
  readonly token: string | undefined;
}

/** The client package's client of the service at `url`, over the chosen protocol. */
export function connect(options: ConnectionOptions): ReceiptsClient {
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw usageError(`--url ${options.url}: not a URL like http://127.0.0.1:8080`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw usageError(`--url ${options.url}: must start with http:// or https://`);
  }
  const token = options.token;
  return createReceiptsClient({
    baseUrl: options.url,
    protocol: options.protocol,
    // An API key or a user token: either is sent as the bearer.
    tokenProvider: token === undefined ? undefined : () => token,
  });
}
