import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { type ConnectRouter, cors as connectCors, type Interceptor } from "@connectrpc/connect";
import { type ConnectNodeAdapterOptions, connectNodeAdapter } from "@connectrpc/connect-node";
import cors from "cors";
import { type ApiDeps, errorMappingInterceptor, registerRoutes } from "./api/routes.js";

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
}

export interface ReceiptServer {
  /** Listens on host:port (port 0 picks a free one) and resolves the bound port. */
  listen(port: number, host: string): Promise<number>;
  /** Stops accepting, lets in-flight calls finish for up to graceMs, then drops the rest. */
  close(graceMs: number): Promise<void>;
}

const http2Preface = "PRI * HTTP/2.0";
const firstBytesTimeoutMs = 30_000;

type NodeHandler = ReturnType<typeof connectNodeAdapter>;

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
  const handler = withCors(
    connectNodeAdapter({
      routes: (router) => {
        registerRoutes(router, deps);
        options.routes?.(router);
      },
      fallback: options.fallback,
      interceptors: [...(options.interceptors ?? []), errorMappingInterceptor(deps.logger)],
      shutdownSignal: options.shutdownSignal,
      readMaxBytes: options.readMaxBytes,
    }),
    options.corsOrigins ?? [],
  );
  const h1 = http.createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, handler);
  const h2 = http2.createServer({}, handler);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.Http2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
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
    sockets.add(socket);
    socket.once("close", () => {
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
    socket.setTimeout(firstBytesTimeoutMs, () => socket.destroy());
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
    },
  };
}
