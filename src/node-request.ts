import * as http2 from "node:http2";
import { Code } from "@connectrpc/connect";
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import { callEnded, stackless } from "./call-end-reasons.js";

type NodeHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
export type NodeRequest = Parameters<NodeHandler>[0];
export type NodeResponse = Parameters<NodeHandler>[1];

/**
 * A Node request as Connect's universal request, as connect-node's
 * `universalRequestFromNodeRequest` makes it, with two differences that every
 * call pays for there: its signal aborts with a reason built without a stack
 * (`call-end-reasons.ts`), and its body is the Node request itself, not an async
 * generator around it.
 */
export function universalRequestOf(
  request: NodeRequest,
  response: NodeResponse,
): UniversalServerRequest & { body: AsyncIterable<Uint8Array> } {
  // An HTTP/1.0 request may name no host; the URL only serves to read a GET call's query.
  const authority =
    ("authority" in request ? request.authority : request.headers.host) ?? "localhost";
  const scheme = "encrypted" in request.socket && request.socket.encrypted ? "https" : "http";
  const path = request.url ?? "";
  const aborts = new AbortController();
  if ("stream" in request) {
    const { stream } = request;
    request.once("close", () => aborts.abort(closedReason(stream.rstCode)));
  } else {
    const onError = (error: Error) => {
      request.off("error", onError);
      response.off("close", onClose);
      aborts.abort(stackless(`the connection failed: ${error.message}`, Code.Aborted));
    };
    // Node closes an HTTP/1.1 request once its body is read: the response tells when the
    // exchange is over.
    const onClose = () => {
      request.off("error", onError);
      response.off("close", onClose);
      aborts.abort(
        request.errored === null
          ? callEnded()
          : stackless(`the connection failed: ${request.errored.message}`, Code.Aborted),
      );
    };
    request.once("error", onError);
    response.once("close", onClose);
  }
  return {
    httpVersion: request.httpVersion,
    method: request.method ?? "",
    url: urlOf(request.method, scheme, authority, path),
    header: webHeaderOf(request.headers),
    body: request,
    signal: aborts.signal,
  };
}

/**
 * Concatenated, not parsed: only a Connect GET reads its URL (for the query), so only then is
 * it checked, and a Host that names no host is replaced rather than failing the call.
 */
function urlOf(method: string | undefined, scheme: string, authority: string, path: string) {
  const rooted = path.startsWith("/") ? path : `/${path}`;
  const url = `${scheme}://${authority}${rooted}`;
  return method !== "GET" || URL.canParse(url) ? url : `${scheme}://localhost${rooted}`;
}

/** Why a closed HTTP/2 stream ended its call, by the code it was reset with. */
function closedReason(rstCode: number): Error {
  const { constants } = http2;
  switch (rstCode) {
    case constants.NGHTTP2_NO_ERROR:
      return callEnded();
    case constants.NGHTTP2_REFUSED_STREAM:
      return stackless("the client refused the stream (REFUSED_STREAM)", Code.Unavailable);
    case constants.NGHTTP2_ENHANCE_YOUR_CALM:
      return stackless("the stream was reset (ENHANCE_YOUR_CALM)", Code.ResourceExhausted);
    default:
      return stackless(`the stream was reset (code 0x${rstCode.toString(16)})`, Code.Canceled);
  }
}

/** Node's request headers as fetch Headers, without HTTP/2's pseudo-headers. */
function webHeaderOf(headers: NodeRequest["headers"]): Headers {
  const header = new Headers();
  for (const name in headers) {
    if (name.startsWith(":")) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (typeof value === "string") header.append(name, value);
    else for (const one of value) header.append(name, one);
  }
  return header;
}
