import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { callerKey, noTenant, tenantKey } from "../api/tenant-context.js";
import type { Logger } from "../logger.js";
import {
  type CredentialIndex,
  type Verification,
  verifyCredentials,
} from "./credential-verifier.js";

/**
 * Authenticates every call: `Authorization: Bearer <API key>` makes the tenant's service
 * caller, `Bearer <user token>` one of its users. Sets the tenant and the caller for the rest
 * of the call; wrong or missing credentials end it with UNAUTHENTICATED.
 */
export function authInterceptor(credentials: () => CredentialIndex, logger: Logger): Interceptor {
  return (next) => async (request) => {
    const procedure = `${request.service.typeName}/${request.method.name}`;
    // Until its credentials name one, the call has no tenant (its log line names none).
    request.contextValues.set(tenantKey, noTenant);
    let verified: Verification;
    try {
      verified = await verifyCredentials(request.header.get("authorization"), credentials());
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
    return next(request);
  };
}
