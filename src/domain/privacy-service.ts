import type {
  PrivacyStore,
  ReceiptSettingChange,
  StoredReceiptSettings,
} from "../store/receipt-store.js";
import { actingAs, type Caller } from "./caller.js";
import { invalidArgument } from "./errors.js";
import type { ReceiptPolicy, ReceiptPrivacy, ReceiptVisibility } from "./receipt-privacy.js";
import { requireId } from "./validate.js";

/** A visibility as a request gives it: "inherit" removes the setting, undefined leaves it. */
export type RequestedVisibility = ReceiptVisibility | "inherit" | undefined;

/** What GetReceiptSettings and SetReceiptSettings answer. */
export interface ReceiptSettingsView {
  readonly userId: string;
  /** As the user set it; undefined when it set none. */
  readonly defaultVisibility: ReceiptVisibility | undefined;
  /** The user's, else the tenant's. */
  readonly effectiveDefaultVisibility: ReceiptVisibility;
  /** Ordered by conversation id. */
  readonly conversations: readonly {
    readonly conversationId: string;
    readonly visibility: ReceiptVisibility;
  }[];
  readonly policy: { readonly c2c: ReceiptPolicy; readonly group: ReceiptPolicy };
}

/** Conversations one SetReceiptSettings call may change. */
export const maxConversationsPerSettingsCall = 100;

/**
 * Users' receipt settings (PrivacyService): a user sets and reads only its own (an empty
 * user_id meaning itself), the tenant's backend anyone's. Validates the whole request before writing, writes
 * it in one store call, then drops the user's cached settings so this instance decides with the
 * new ones at once.
 */
export class PrivacyService {
  readonly #store: Pick<PrivacyStore, "putReceiptSettings" | "getReceiptSettings">;
  readonly #privacy: ReceiptPrivacy;

  constructor(deps: {
    store: Pick<PrivacyStore, "putReceiptSettings" | "getReceiptSettings">;
    privacy: ReceiptPrivacy;
  }) {
    this.#store = deps.store;
    this.#privacy = deps.privacy;
  }

  async setReceiptSettings(
    tenant: string,
    caller: Caller,
    request: {
      userId: string;
      defaultVisibility: RequestedVisibility;
      conversations: readonly { conversationId: string; visibility: RequestedVisibility }[];
    },
  ): Promise<ReceiptSettingsView> {
    const userId = requireId("user_id", actingAs(caller, request.userId, "user_id"));
    if (request.conversations.length > maxConversationsPerSettingsCall) {
      throw invalidArgument(
        "conversations",
        `must hold at most ${maxConversationsPerSettingsCall} conversations, got ${request.conversations.length}`,
      );
    }
    const changes: ReceiptSettingChange[] = [];
    if (request.defaultVisibility !== undefined) {
      changes.push({ conversationId: "", visibility: stored(request.defaultVisibility) });
    }
    const seen = new Set<string>();
    for (const [i, conversation] of request.conversations.entries()) {
      const at = `conversations[${i}]`;
      const conversationId = requireId(`${at}.conversation_id`, conversation.conversationId);
      if (seen.has(conversationId)) {
        throw invalidArgument(
          `${at}.conversation_id`,
          `conversation ${conversationId} is listed twice`,
        );
      }
      seen.add(conversationId);
      if (conversation.visibility === undefined) {
        throw invalidArgument(
          `${at}.visibility`,
          "must be RECEIPT_VISIBILITY_SHARED, RECEIPT_VISIBILITY_PRIVATE or RECEIPT_VISIBILITY_INHERIT",
        );
      }
      changes.push({ conversationId, visibility: stored(conversation.visibility) });
    }
    if (changes.length > 0) {
      await this.#store.putReceiptSettings(tenant, userId, changes);
      this.#privacy.forget(tenant, userId);
    }
    return this.#view(tenant, userId, await this.#store.getReceiptSettings(tenant, userId));
  }

  async getReceiptSettings(
    tenant: string,
    caller: Caller,
    request: { userId: string },
  ): Promise<ReceiptSettingsView> {
    const userId = requireId("user_id", actingAs(caller, request.userId, "user_id"));
    return this.#view(tenant, userId, await this.#store.getReceiptSettings(tenant, userId));
  }

  #view(tenant: string, userId: string, settings: StoredReceiptSettings): ReceiptSettingsView {
    const privacy = this.#privacy.tenantPrivacy(tenant);
    return {
      userId,
      defaultVisibility: settings.defaultVisibility,
      effectiveDefaultVisibility: settings.defaultVisibility ?? privacy.defaultVisibility,
      conversations: [...settings.conversations]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([conversationId, visibility]) => ({ conversationId, visibility })),
      policy: privacy.policy,
    };
  }
}

const stored = (visibility: ReceiptVisibility | "inherit"): ReceiptVisibility | undefined =>
  visibility === "inherit" ? undefined : visibility;
