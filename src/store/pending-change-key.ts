import type { PendingChange } from "../domain/model.js";

/**
 * The outbox key of a pending change within its tenant: the same fact always
 * has the same key, so writing it twice (a retry, two instances) keeps one
 * entry and clearing it needs nothing but the fact.
 */
export function pendingChangeKey(change: PendingChange): string {
  switch (change.kind) {
    case "receipt":
      return `r\u0000${change.messageId}\u0000${change.readerId}`;
    case "horizon":
      return `h\u0000${change.conversationId}\u0000${change.readerId}\u0000${change.readUpTo}`;
    case "deletion":
      return `d\u0000${change.messageId}`;
  }
}

/** A pending change's key across tenants: the same fact of the same tenant, the same text. */
export const pendingChangeIdentity = (change: PendingChange): string =>
  `${change.tenant}\u0000${pendingChangeKey(change)}`;
