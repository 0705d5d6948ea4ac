import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { callerKey, tenantKey } from "../api/tenant-context.js";
import type { TenantLimits } from "./rate-limiter.js";

/**
 * Caps the server streams one user holds open on this instance (the watcher caps all streams
 * of the instance). A slot is taken when the stream opens and given back once, whichever comes
 * first: the stream ends, fails, or the call is cancelled.
 */
export function streamLimitInterceptor(limitsOf: (tenant: string) => TenantLimits): Interceptor {
  const open = new Map<string, number>();
  // Not an async function: a call that needs no slot (every unary call) costs no promise here.
  return (next) => (request) => {
    const caller = request.contextValues.get(callerKey);
    if (request.method.methodKind !== "server_streaming" || caller.kind !== "user") {
      return next(request);
    }
    return limited(next, request, caller.userId);
  };
  async function limited(
    next: Parameters<Interceptor>[0],
    request: Parameters<Parameters<Interceptor>[0]>[0],
    userId: string,
  ) {
    const tenant = request.contextValues.get(tenantKey);
    const key = `${tenant}\u0000${userId}`;
    const max = limitsOf(tenant).streamsPerUser;
    const count = open.get(key) ?? 0;
    if (count >= max) {
      throw new ConnectError(
        `a user may hold at most ${max} open streams; close one first`,
        Code.ResourceExhausted,
      );
    }
    open.set(key, count + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const left = (open.get(key) ?? 1) - 1;
      if (left <= 0) open.delete(key);
      else open.set(key, left);
    };
    request.signal.addEventListener("abort", release, { once: true });
    try {
      const response = await next(request);
      if (!response.stream) {
        release();
        return response;
      }
      return { ...response, message: releasing(response.message, release) };
    } catch (error) {
      release();
      throw error;
    }
  }
}

/** The messages of a stream, then `release` once it ends, fails or is abandoned. */
export async function* releasing<T>(
  messages: AsyncIterable<T>,
  release: () => void,
): AsyncIterable<T> {
  try {
    yield* messages;
  } finally {
    release();
  }
}
