import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { type Caller, serviceCaller } from "../domain/caller.js";

/** Without configured tenants (development mode), every call belongs to one default tenant. */
export const defaultTenant = "default";

/** The tenant of a call whose credentials have not (yet) named one: refused calls. */
export const noTenant = "";

/** The tenant a call acts for; set by the authentication interceptor. */
export const tenantKey = createContextKey<string>(defaultTenant, { description: "tenant id" });

/** Who is calling; set by the authentication interceptor (development mode: a service caller). */
export const callerKey = createContextKey<Caller>(serviceCaller, { description: "caller" });

export const tenantOf = (context: HandlerContext): string => context.values.get(tenantKey);
export const callerOf = (context: HandlerContext): Caller => context.values.get(callerKey);
