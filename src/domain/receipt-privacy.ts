import type {
  MessageStore,
  PrivacyStore,
  ReceiptVisibility,
  StoredReceiptSettings,
} from "../store/receipt-store.js";
import type { ConversationType } from "./model.js";

export type { ReceiptVisibility };

/** A tenant's rule for one conversation type: the user's choice, or always / never shown. */
export type ReceiptPolicy = "user-choice" | "always" | "never";

/** What a tenant decides about private reads (the tenants file's `receipts`). */
export interface TenantPrivacy {
  readonly policy: { readonly [type in ConversationType]: ReceiptPolicy };
  /** The visibility of a user who set none. */
  readonly defaultVisibility: ReceiptVisibility;
  /** C2C: a user whose reads are private there does not see the other's reads either. */
  readonly reciprocalC2c: boolean;
}

export const defaultTenantPrivacy: TenantPrivacy = Object.freeze({
  policy: Object.freeze({ c2c: "user-choice", group: "user-choice" }),
  defaultVisibility: "shared",
  reciprocalC2c: false,
});

/** Whether a user's reads in a conversation are private: policy, then override, then defaults. */
export function readsArePrivate(
  privacy: TenantPrivacy,
  settings: StoredReceiptSettings,
  conversationId: string,
  type: ConversationType,
): boolean {
  const policy = privacy.policy[type];
  if (policy !== "user-choice") return policy === "never";
  const visibility =
    settings.conversations.get(conversationId) ??
    settings.defaultVisibility ??
    privacy.defaultVisibility;
  return visibility === "private";
}

export interface ReceiptPrivacyDeps {
  readonly store: Pick<PrivacyStore, "getReceiptSettings"> & Pick<MessageStore, "getConversation">;
  /** The tenant's current privacy rules; reloadable, so asked on every decision. */
  readonly privacyOf?: (tenant: string) => TenantPrivacy;
  /** How long a user's settings are kept; what another instance set is seen within it. */
  readonly cacheTtlMs?: number;
  /** Users whose settings are kept at once; the oldest go first. */
  readonly cacheEntries?: number;
  readonly clock?: () => number;
}

interface CachedSettings {
  readonly settings: Promise<StoredReceiptSettings>;
  readonly expiresAt: number;
}

/**
 * Decides, when a read is made, whether it is shown or private. A user's settings are read
 * once per `cacheTtlMs` (default 5 s) and kept per (tenant, user), so that SendReceipts reads
 * them from the store about once per user and TTL; a change made through this instance drops
 * its entry at once (forget), one made through another is seen within the TTL. A policy of
 * "always" or "never" decides without reading any setting.
 */
export class ReceiptPrivacy {
  readonly #store: ReceiptPrivacyDeps["store"];
  readonly #privacyOf: (tenant: string) => TenantPrivacy;
  readonly #ttlMs: number;
  readonly #entries: number;
  readonly #clock: () => number;
  readonly #cache = new Map<string, CachedSettings>();

  constructor(deps: ReceiptPrivacyDeps) {
    this.#store = deps.store;
    this.#privacyOf = deps.privacyOf ?? (() => defaultTenantPrivacy);
    this.#ttlMs = deps.cacheTtlMs ?? 5_000;
    this.#entries = deps.cacheEntries ?? 100_000;
    this.#clock = deps.clock ?? Date.now;
  }

  tenantPrivacy(tenant: string): TenantPrivacy {
    return this.#privacyOf(tenant);
  }

  /** Whether the user's reads in the conversation are private now. */
  async hides(
    tenant: string,
    userId: string,
    conversation: { readonly conversationId: string; readonly type: ConversationType },
  ): Promise<boolean> {
    const privacy = this.#privacyOf(tenant);
    if (privacy.policy[conversation.type] !== "user-choice") {
      return privacy.policy[conversation.type] === "never";
    }
    const settings = await this.settings(tenant, userId);
    return readsArePrivate(privacy, settings, conversation.conversationId, conversation.type);
  }

  /** hides() for a conversation known by id only (a horizon); one without messages is a group. */
  async hidesInConversation(
    tenant: string,
    userId: string,
    conversationId: string,
  ): Promise<boolean> {
    const conversation = await this.#store.getConversation(tenant, conversationId);
    return this.hides(tenant, userId, { conversationId, type: conversation?.type ?? "group" });
  }

  /** The user's settings, from the cache when fresh. */
  settings(tenant: string, userId: string): Promise<StoredReceiptSettings> {
    const key = `${tenant}\u0000${userId}`;
    const now = this.#clock();
    const cached = this.#cache.get(key);
    if (cached !== undefined && cached.expiresAt > now) return cached.settings;
    if (cached !== undefined) this.#cache.delete(key);
    const settings = this.#store.getReceiptSettings(tenant, userId);
    // A failed read is not kept: the next call asks again.
    settings.catch(() => {
      if (this.#cache.get(key)?.settings === settings) this.#cache.delete(key);
    });
    this.#cache.set(key, { settings, expiresAt: now + this.#ttlMs });
    if (this.#cache.size > this.#entries) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
    return settings;
  }

  /** Drops the user's cached settings; called once a change of them is stored. */
  forget(tenant: string, userId: string): void {
    this.#cache.delete(`${tenant}\u0000${userId}`);
  }
}
