import { ReceiptError } from "./errors.js";

/** Who is calling: a tenant's backend (API key) or one of its users (user token). */
export type Caller =
  | { readonly kind: "service" }
  | { readonly kind: "user"; readonly userId: string };

export const serviceCaller: Caller = Object.freeze({ kind: "service" });

/*
 * The rules that need nothing but the caller: whom a call may act as. The rules that read
 * conversations, messages and memberships are AccessPolicy's (access-policy.ts), which applies
 * these too.
 */

/** TrackMessages, DeleteMessages, MembershipService, EraseUser: the tenant's backend only. */
export function requireService(caller: Caller, rpc: string): void {
  if (caller.kind !== "service") {
    throw new ReceiptError("permission_denied", `${rpc} is for the tenant's backend only`);
  }
}

/** The user a call acts as: users only as themselves, empty meaning the token's user. */
export function actingAs(caller: Caller, userId: string, field = "reader_id"): string {
  if (caller.kind === "service") return userId;
  if (userId !== "" && userId !== caller.userId) {
    throw new ReceiptError("permission_denied", "a user may act only as themselves", field);
  }
  return caller.userId;
}

/**
 * Whose view of receipts to answer with. A user sees its own; a service caller the one it
 * names, or everyone's shared view.
 */
export function viewerOf(caller: Caller, viewerId: string): string | undefined {
  if (caller.kind === "service") return viewerId === "" ? undefined : viewerId;
  return actingAs(caller, viewerId, "viewer_id");
}

/** ExportUserData: the tenant's backend for anyone, a user for itself only. Returns the user. */
export function exportedUserOf(caller: Caller, userId: string): string {
  if (caller.kind === "service") return userId;
  if (userId !== "" && userId !== caller.userId) {
    throw new ReceiptError("permission_denied", "a user may export only its own data", "user_id");
  }
  return caller.userId;
}
