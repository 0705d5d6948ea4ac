import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import type { Readiness } from "./readiness.js";

/** What a call refused or cut off by shutdown gets: clients retry UNAVAILABLE elsewhere. */
export const shuttingDown = (): ConnectError =>
  new ConnectError("this instance is shutting down; retry on another instance", Code.Unavailable);

/**
 * Once shutdown began, refuses new calls with UNAVAILABLE while calls already
 * running finish. Health checks still answer, so that probes see NOT_SERVING
 * rather than an error.
 */
export function drainInterceptor(readiness: Readiness): Interceptor {
  // Not an async function: a call that passes costs no promise of its own.
  return (next) => (request) =>
    readiness.draining && request.service !== Health
      ? Promise.reject(shuttingDown())
      : next(request);
}
