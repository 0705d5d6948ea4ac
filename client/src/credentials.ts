import type { Interceptor } from "@connectrpc/connect";

/** How calls authenticate: at most one of the three; none in development mode. */
export interface Credentials {
  /** A server API key of the tenant (backends only: never ship one to a browser). */
  readonly apiKey?: string | undefined;
  /** A user token (JWT) the tenant's backend minted: the calls act as that user. */
  readonly userToken?: string | undefined;
  /** Asked before every call and every reconnection, so that tokens can be renewed. */
  readonly tokenProvider?: (() => string | Promise<string>) | undefined;
}

/** Sends the credential as `Authorization: Bearer …` on every call; undefined without one. */
export function bearerInterceptor(credentials: Credentials): Interceptor | undefined {
  const given = [credentials.apiKey, credentials.userToken, credentials.tokenProvider].filter(
    (value) => value !== undefined,
  );
  if (given.length > 1) {
    throw new TypeError("createReceiptsClient: give one of apiKey, userToken and tokenProvider");
  }
  const fixed = credentials.apiKey ?? credentials.userToken;
  const provider = credentials.tokenProvider ?? (fixed === undefined ? undefined : () => fixed);
  if (provider === undefined) return undefined;
  return (next) => async (request) => {
    request.header.set("authorization", `Bearer ${await provider()}`);
    return next(request);
  };
}
