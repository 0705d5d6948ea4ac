import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import type { Metrics } from "./metrics.js";
import type { Readiness } from "./readiness.js";

export type HttpHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;

/**
 * Plain HTTP beside the RPCs, for load balancers and Prometheus:
 * `GET /healthz` (the process is alive), `GET /readyz` (it should receive
 * calls: 200, else 503 with the reason) and `GET /metrics`. Anything else is 404.
 */
export function opsHttpHandler(deps: { readiness: Readiness; metrics: Metrics }): HttpHandler {
  const send = (
    response: Parameters<HttpHandler>[1],
    status: number,
    contentType: string,
    body: string,
  ) => {
    response.writeHead(status, { "content-type": contentType, "cache-control": "no-store" });
    response.end(body);
  };
  const json = "application/json";
  return (request, response) => {
    const path = (request.url ?? "").split("?", 1)[0];
    const known = path === "/healthz" || path === "/readyz" || path === "/metrics";
    if (!known) return send(response, 404, json, '{"error":"not found"}\n');
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.setHeader("allow", "GET, HEAD");
      return send(response, 405, json, '{"error":"method not allowed"}\n');
    }
    if (path === "/healthz") return send(response, 200, json, '{"status":"alive"}\n');
    const answer = async () => {
      if (path === "/metrics") {
        return send(response, 200, deps.metrics.contentType, await deps.metrics.scrape());
      }
      const state = await deps.readiness.check();
      const body = state.ready
        ? { status: "ready" }
        : state.draining
          ? { status: "draining" }
          : { status: "not ready", failing: state.failing };
      send(response, state.ready ? 200 : 503, json, `${JSON.stringify(body)}\n`);
    };
    answer().catch(() => send(response, 500, json, '{"error":"internal error"}\n'));
  };
}
