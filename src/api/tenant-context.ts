import { createContextKey } from "@connectrpc/connect";

/** Until authentication exists, every call belongs to one default tenant. */
export const defaultTenant = "default";

/** The tenant a call acts for; set by the authentication interceptor. */
export const tenantKey = createContextKey<string>(defaultTenant, { description: "tenant id" });
