import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  cors as connectCors,
  createConnectRouter,
  type Interceptor,
} from "@connectrpc/connect";
import {
  type ConnectNodeAdapterOptions,
  compressionBrotli,
  compressionGzip,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import cors from "cors";
import { type ApiDeps, errorMappingInterceptor, registerRoutes } from "./api/routes.js";
import { endCallsWithReason } from "./call-end-reasons.js";
import { FixedDelayTimers } from "./domain/fixed-delay-timers.js";
import { bodyWithin, type ClientLimits, PerAddressCount } from "./limits/client-limits.js";
import type { Logger } from "./logger.js";
import { type NodeRequest, type NodeResponse, universalRequestOf } from "./node-request.js";

export interface ServerOptions {
  /** Interceptors that run before the error mapping (auth, limits, logging). */
  readonly interceptors?: readonly Interceptor[];
  /** Aborted when the server starts shutting down; in-flight handlers see it. */
  readonly shutdownSignal?: AbortSignal;
  /** Browser origins allowed to call cross-origin; none by default. */
  readonly corsOrigins?: readonly string[];
  /** Largest request message accepted; larger ones get RESOURCE_EXHAUSTED unread. */
  readonly readMaxBytes?: number;
  /** More services on the same port, registered after the API (health, reflection). */
  readonly routes?: (router: ConnectRouter) => void;
  /** Answers plain HTTP requests that match no RPC (probes, metrics); 404 by default. */
  readonly fallback?: ConnectNodeAdapterOptions["fallback"];
  /** Per-address caps and request time limits; generous defaults without. */
  readonly clientLimits?: ClientLimits;
  /** Called as each request arrives, before anything of it runs (the store's memories). */
  readonly onRequestArrived?: () => void;
}

const defaultClientLimits: ClientLimits = {
  connectionsPerAddress: 1_024,
  streamsPerAddress: 10_000,
  bodyTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
};

export interface ReceiptServer {
  /** Listens on host:port (port 0 picks a free one) and resolves the bound port. */
  listen(port: number, host: string): Promise<number>;
  /** Stops accepting, lets in-flight calls finish for up to graceMs, then drops the rest. */
  close(graceMs: number): Promise<void>;
}

const http2Preface = "PRI * HTTP/2.0";

type NodeHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;

/** A Node request handler that may be told to refuse the request with an error instead. */
type RpcHandler = (request: NodeRequest, response: NodeResponse, refusal?: ConnectError) => void;

/**
 * The Connect router as a Node request handler, like connect-node's adapter, except that the
 * body of a unary or server-streaming call must arrive within `limits.bodyTimeoutMs` (a
 * client-streaming body is the conversation itself and is left alone), and that a refused
 * call is answered with its error in the caller's own protocol, its body left unread.
 */
function rpcHandler(
  options: Omit<ConnectNodeAdapterOptions, "fallback"> & {
    readonly fallback: NodeHandler;
    readonly limits: ClientLimits;
    readonly logger: Logger;
  },
): RpcHandler {
  const router = createConnectRouter({
    ...options,
    acceptCompression: [compressionGzip, compressionBrotli],
    requestGate: endCallsWithReason,
  });
  options.routes(router);
  const bodyDeadlines = new FixedDelayTimers(options.limits.bodyTimeoutMs);
  const handlers = new Map(router.handlers.map((handler) => [handler.requestPath, handler]));
  return (request, response, refusal) => {
    const handler = handlers.get((request.url ?? "").split("?", 1)[0] ?? "");
    if (handler === undefined) {
      if (refusal === undefined) return options.fallback(request, response);
      response.writeHead(429, { connection: "close", "retry-after": "1" });
      return response.end();
    }
    const universal = universalRequestOf(request, response);
    const kind = handler.method.methodKind;
    let body: AsyncIterable<Uint8Array> = universal.body;
    if (refusal !== undefined) {
      stopReadingAfterAnswer(request, response);
      body = refusedBody(refusal);
    } else if (kind === "unary" || kind === "server_streaming") {
      body = bodyWithin(body, bodyDeadlines, () => {
        options.limits.onRefused?.("request_body_time");
        stopReadingAfterAnswer(request, response);
      });
    }
    handler({ ...universal, body })
      .then((answer) => universalResponseToNodeResponse(answer, response))
      .catch((reason: unknown) => {
        // The client went away before its answer was written: nothing to report.
        if (ConnectError.from(reason).code === Code.Aborted) return;
        options.logger.error(
          { err: reason, procedure: `${handler.service.typeName}/${handler.method.name}` },
          "writing the response failed",
        );
        // The caller is not left waiting for an answer that will not come.
        try {
          if (response.headersSent) {
            response.destroy();
          } else {
            response.writeHead(500);
            response.end();
          }
        } catch {
          // The stream is already gone (writeHead throws on a closed HTTP/2 stream).
          response.destroy();
        }
      });
  };
}

/** How long after its answer a refused HTTP/2 stream is reset: the answer's trailers go first. */
const resetAfterAnswerMs = 250;

/** Once the refusal is out, the rest of a late body is not read: the stream or connection closes. */
function stopReadingAfterAnswer(request: NodeRequest, response: NodeResponse): void {
  if ("stream" in request) {
    const { stream } = request;
    // A reset sent at once could overtake the trailers that carry the error.
    stream.once("finish", () => {
      setTimeout(() => {
        if (!stream.closed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
      }, resetAfterAnswerMs).unref();
    });
  } else if (!response.headersSent) {
    response.setHeader("connection", "close");
  }
}

/** A body whose first read fails: the handler answers with `error` before reading anything. */
// biome-ignore lint/correctness/useYield: it only throws.
async function* refusedBody(error: ConnectError): AsyncIterable<Uint8Array> {
  throw error;
}

/**
 * Lets pages of the allowed origins call every RPC, the server stream included:
 * preflights are answered here, before the Connect adapter, and responses
 * expose the headers a browser client reads. Other origins get no CORS headers,
 * so browsers refuse to send their calls.
 */
function withCors(handler: NodeHandler, origins: readonly string[]): NodeHandler {
  if (origins.length === 0) return handler;
  const middleware = cors({
    origin: [...origins],
    methods: [...connectCors.allowedMethods],
    allowedHeaders: [...connectCors.allowedHeaders, "Authorization"],
    exposedHeaders: [...connectCors.exposedHeaders, "Resume-Token", "Retry-After-Ms"],
    maxAge: 7_200,
  });
  return (request, response) => middleware(request, response, () => handler(request, response));
}

/**
 * One port for every protocol: a connection that opens with the HTTP/2
 * preface (gRPC, Connect over h2c) goes to the HTTP/2 server; anything else
 * (Connect and gRPC-Web over HTTP/1.1, browsers) to the HTTP/1.1 server.
 * Node's cleartext HTTP/2 server cannot fall back to HTTP/1.1 by itself.
 */
export function createReceiptServer(deps: ApiDeps, options: ServerOptions = {}): ReceiptServer {
  const limits = options.clientLimits ?? defaultClientLimits;
  const rpc = rpcHandler({
    routes: (router) => {
      registerRoutes(router, deps);
      options.routes?.(router);
    },
    fallback: options.fallback ?? notFound,
    interceptors: [...(options.interceptors ?? []), errorMappingInterceptor(deps.logger)],
    shutdownSignal: options.shutdownSignal,
    readMaxBytes: options.readMaxBytes,
    limits,
    logger: deps.logger,
  });
  const streamsHeld = new PerAddressCount(limits.streamsPerAddress);
  const arrived = options.onRequestArrived ?? (() => {});
  const handler = withCors((request, response) => {
    arrived();
    const address = request.socket.remoteAddress ?? "";
    if (!streamsHeld.take(address)) {
      limits.onRefused?.("streams_per_address");
      return rpc(
        request,
        response,
        new ConnectError(
          `at most ${limits.streamsPerAddress} requests may be in flight from one address; retry when one has ended`,
          Code.ResourceExhausted,
        ),
      );
    }
    response.once("close", () => streamsHeld.give(address));
    rpc(request, response);
  }, options.corsOrigins ?? []);
  const h1 = http.createServer(
    {
      keepAliveTimeout: 65_000,
      headersTimeout: limits.headersTimeoutMs,
      // How often Node checks those times: often enough that a limit holds to within a quarter.
      connectionsCheckingInterval: Math.max(250, Math.floor(limits.headersTimeoutMs / 4)),
      // A backstop for plain HTTP requests; RPC bodies are refused at bodyTimeoutMs, in protocol.
      requestTimeout: Math.max(limits.headersTimeoutMs, limits.bodyTimeoutMs + 5_000),
    },
    handler,
  );
  // h1 never listens itself (the front server hands it connections); this starts the checks of
  // headersTimeout and requestTimeout that Node runs for a listening server.
  h1.emit("listening");
  const h2 = http2.createServer(
    { settings: { maxConcurrentStreams: limits.streamsPerAddress } },
    handler,
  );
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.Http2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  const connectionsHeld = new PerAddressCount(limits.connectionsPerAddress);
  // h1 never listens itself, so Node does not track its connections: count requests per socket
  // to close keep-alive connections as soon as they are idle during shutdown.
  const inFlight = new Map<net.Socket, number>();
  const sessionSockets = new WeakSet<net.Socket>();
  let closing = false;
  h1.on("request", (request: http.IncomingMessage, response: http.ServerResponse) => {
    const socket = request.socket;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    if (closing) response.setHeader("connection", "close");
    response.once("close", () => {
      const left = (inFlight.get(socket) ?? 1) - 1;
      inFlight.set(socket, left);
      if (closing && left === 0) socket.end();
    });
  });

  const front = net.createServer((socket) => {
    const address = socket.remoteAddress ?? "";
    if (!connectionsHeld.take(address)) {
      limits.onRefused?.("connections_per_address");
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once("close", () => {
      connectionsHeld.give(address);
      sockets.delete(socket);
      inFlight.delete(socket);
    });
    let head = Buffer.alloc(0);
    const sniff = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const prefix = head.toString("latin1", 0, Math.min(head.length, http2Preface.length));
      // Wait until the first bytes can tell the two protocols apart.
      if (head.length < http2Preface.length && http2Preface.startsWith(prefix)) return;
      socket.removeListener("data", sniff);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(head);
      if (prefix === http2Preface) {
        // The HTTP/2 session drains the unshifted bytes itself; resuming here would lose them.
        sessionSockets.add(socket);
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    // A connection that never says which protocol it speaks is dropped; after the hand-off the
    // HTTP servers' own timeouts apply.
    socket.setTimeout(limits.headersTimeoutMs, () => socket.destroy());
    socket.on("data", sniff);
    socket.on("error", () => socket.destroy());
  });

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        front.once("error", reject);
        front.listen(port, host, () => {
          front.off("error", reject);
          resolve((front.address() as net.AddressInfo).port);
        });
      });
    },
    async close(graceMs) {
      closing = true;
      const closed = new Promise<void>((resolve) => front.close(() => resolve()));
      for (const socket of sockets) {
        if (!sessionSockets.has(socket) && (inFlight.get(socket) ?? 0) === 0) socket.end();
      }
      for (const session of sessions) session.close();
      const timer = setTimeout(() => {
        for (const session of sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
      }, graceMs);
      await closed;
      clearTimeout(timer);
      // Stops the header and request time checks started above.
      h1.close();
    },
  };
}

const notFound: NodeHandler = (_request, response) => {
  response.writeHead(404);
  response.end();
};
