import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { callerKey, tenantKey } from "../api/tenant-context.js";
import { releasing } from "../limits/stream-limit-interceptor.js";
import type { Logger } from "../logger.js";
import {
  type CredentialIndex,
  type Verification,
  verifyCredentials,
} from "./credential-verifier.js";
import type { StreamCredentials } from "./stream-credentials.js";

/**
 * Authenticates every call: `Authorization: Bearer <API key>` makes the tenant's service
 * caller, `Bearer <user token>` one of its users. Sets the tenant and the caller for the rest
 * of the call; wrong or missing credentials end it with UNAUTHENTICATED. A server stream's
 * credential is followed while it is open (`streams`): its signal aborts when the credential
 * stops being accepted.
 */
export function authInterceptor(
  credentials: () => CredentialIndex,
  logger: Logger,
  streams?: StreamCredentials,
): Interceptor {
  return (next) => async (request) => {
    const procedure = `${request.service.typeName}/${request.method.name}`;
    const authorization = request.header.get("authorization");
    let verified: Verification;
    try {
      verified = await verifyCredentials(authorization, credentials());
    } catch (error) {
      // This runs before the error mapping: log here what would otherwise reach nobody.
      logger.error({ err: error, procedure }, "credential verification failed");
      throw new ConnectError("internal error", Code.Internal);
    }
    if (!verified.ok) {
      logger.info({ procedure, reason: verified.reason }, "call refused: unauthenticated");
      throw new ConnectError(verified.message, Code.Unauthenticated);
    }
    request.contextValues.set(tenantKey, verified.tenant);
    request.contextValues.set(callerKey, verified.caller);
    if (streams === undefined || request.method.methodKind !== "server_streaming") {
      return next(request);
    }
    const access = streams.follow(authorization, verified);
    try {
      const response = await next({
        ...request,
        signal: AbortSignal.any([request.signal, access.signal]),
      });
      if (!response.stream) {
        access.release();
        return response;
      }
      return { ...response, message: releasing(response.message, access.release) };
    } catch (error) {
      access.release();
      throw error;
    }
  };
}
