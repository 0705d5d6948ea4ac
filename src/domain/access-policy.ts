import type { Conversation, ReceiptStore } from "../store/receipt-store.js";
import { refuseUsersBeingErased } from "./erasure-guard.js";
import { AccessEndedError, memberListsWithheld, ReceiptError } from "./errors.js";
import { limits } from "./limits.js";
import type { MembershipMonitor } from "./membership-monitor.js";
import type { ConversationType } from "./model.js";
import type { TenantPrivacy } from "./receipt-privacy.js";
import { optionalId, requireId, requireIdList } from "./validate.js";

/** Who is calling: a tenant's backend (API key) or one of its users (user token). */
export type Caller =
  | { readonly kind: "service" }
  | { readonly kind: "user"; readonly userId: string };

export const serviceCaller: Caller = Object.freeze({ kind: "service" });

/** Per-tenant receipt settings, like the IM consoles' "group types that support read receipts". */
export interface TenantSettings {
  /** Receipts on or off per conversation type. */
  readonly receipts: { readonly [type in ConversationType]: boolean };
  /**
   * The largest group (members when the message was sent) for which ListReadMembers lists who
   * has and has not read; above it only the counts are served.
   */
  readonly maxGroupSizeForMemberLists: number;
  /** Whether any current member, not only the sender, may list who has read a message. */
  readonly readMembersOpenToMembers: boolean;
  /** Private reads: policy per conversation type, the default setting, reciprocity (C2C). */
  readonly privacy?: TenantPrivacy;
  /** How long messages and their receipts are kept after sent_at (ms); undefined: until deleted. */
  readonly retentionMs?: number;
}

export const defaultTenantSettings: TenantSettings = Object.freeze({
  receipts: Object.freeze({ c2c: true, group: true }),
  maxGroupSizeForMemberLists: 10_000,
  readMembersOpenToMembers: false,
});

export interface AccessPolicyDeps {
  readonly store: ReceiptStore;
  /** The tenant's current settings; reloadable, so asked on every call. */
  readonly settingsOf?: (tenant: string) => TenantSettings;
  /** Follows the groups users' open streams watch; without it, streams never end on leaving. */
  readonly memberships?: MembershipMonitor;
}

/**
 * Who may do what. Service callers may act for any user of their tenant; users act only as
 * themselves and see only conversations they belong to. A refusal never tells a user whether
 * the conversation, message or user they asked about exists: "not yours" and "not there" get
 * the same answer until the user is known to belong to the conversation.
 *
 * "Belongs to" a group means a current member (reads of other people's activity), or a member
 * now or before (acknowledging messages, where the audience rule then decides per message).
 * A user may always read the receipts of messages they sent.
 */
export class AccessPolicy {
  readonly #store: ReceiptStore;
  readonly #settingsOf: (tenant: string) => TenantSettings;
  readonly #memberships: MembershipMonitor | undefined;

  constructor(deps: AccessPolicyDeps) {
    this.#store = deps.store;
    this.#settingsOf = deps.settingsOf ?? (() => defaultTenantSettings);
    this.#memberships = deps.memberships;
  }

  /** DeleteMessages: the messaging backend recalls messages; a user never deletes receipts. */
  authorizeDeleteMessages(caller: Caller): void {
    this.requireService(caller, "DeleteMessages");
  }

  /** TrackMessages and MembershipService: the tenant's backend only. */
  requireService(caller: Caller, rpc: string): void {
    if (caller.kind !== "service") {
      throw new ReceiptError("permission_denied", `${rpc} is for the tenant's backend only`);
    }
  }

  /**
   * SetReceiptSettings and GetReceiptSettings: returns the user whose settings they are. A user
   * sets and reads only its own (an empty user_id meaning itself).
   */
  authorizeReceiptSettings(caller: Caller, userId: string): string {
    return actingAs(caller, userId, "user_id");
  }

  /**
   * GetReceipts (after authorizeGetReceipts): whose view to answer with. A user sees its own;
   * a service caller the one it names, or everyone's shared view.
   */
  viewerOf(caller: Caller, viewerId: string): string | undefined {
    if (caller.kind === "service") return viewerId === "" ? undefined : viewerId;
    return actingAs(caller, viewerId, "viewer_id");
  }

  async authorizeTrackMessages(
    tenant: string,
    caller: Caller,
    messages: readonly {
      readonly conversationType: ConversationType | undefined;
      readonly senderId?: string;
      readonly receiverId?: string;
    }[],
  ): Promise<void> {
    this.requireService(caller, "TrackMessages");
    const { receipts } = this.#settingsOf(tenant);
    for (const [i, message] of messages.entries()) {
      const type = message.conversationType;
      if (type !== undefined && !receipts[type]) {
        throw receiptsOff(type, `messages[${i}].conversation_type`);
      }
    }
    const people = messages.flatMap((m, i) =>
      (["sender_id", "receiver_id"] as const).flatMap((name) => {
        const userId = name === "sender_id" ? m.senderId : m.receiverId;
        return userId ? [{ userId, field: `messages[${i}].${name}` }] : [];
      }),
    );
    await refuseUsersBeingErased(this.#store, tenant, people);
  }

  /** ExportUserData: the tenant's backend for anyone, a user for itself only. Returns the user. */
  authorizeExportUserData(caller: Caller, userId: string): string {
    if (caller.kind === "service") return userId;
    if (userId !== "" && userId !== caller.userId) {
      throw new ReceiptError("permission_denied", "a user may export only its own data", "user_id");
    }
    return caller.userId;
  }

  /** Returns the reader to record: the request's, or the token's user when it left it empty. */
  async authorizeSendReceipts(
    tenant: string,
    caller: Caller,
    request: { conversationId: string; readerId: string; messageIds: readonly string[] },
  ): Promise<string> {
    const readerId = actingAs(caller, request.readerId);
    const conversationId = requireId("conversation_id", request.conversationId);
    const ids = requireIdList("message_ids", request.messageIds, limits.maxIdsPerReceiptCall);
    const conversation = await this.#store.getConversation(tenant, conversationId);
    if (caller.kind === "user") {
      if (!(await this.#belongs(tenant, readerId, conversationId, conversation, "ever"))) {
        throw notYours("conversation_id");
      }
      await this.#requireMessagesOf(tenant, conversationId, ids, "message_ids");
    }
    this.#requireReceiptsOn(tenant, conversation);
    await refuseUsersBeingErased(this.#store, tenant, [{ userId: readerId, field: "reader_id" }]);
    return readerId;
  }

  async authorizeMarkConversationRead(
    tenant: string,
    caller: Caller,
    request: { conversationId: string; readerId: string },
  ): Promise<string> {
    const readerId = actingAs(caller, request.readerId);
    const conversationId = requireId("conversation_id", request.conversationId);
    const conversation = await this.#store.getConversation(tenant, conversationId);
    if (
      caller.kind === "user" &&
      !(await this.#belongs(tenant, readerId, conversationId, conversation, "ever"))
    ) {
      throw notYours("conversation_id");
    }
    this.#requireReceiptsOn(tenant, conversation);
    await refuseUsersBeingErased(this.#store, tenant, [{ userId: readerId, field: "reader_id" }]);
    return readerId;
  }

  async authorizeGetReceipts(
    tenant: string,
    caller: Caller,
    request: { conversationId: string; messageIds: readonly string[] },
  ): Promise<void> {
    if (caller.kind === "service") return;
    const conversationId = requireId("conversation_id", request.conversationId);
    const ids = requireIdList("message_ids", request.messageIds, limits.maxIdsPerReceiptCall);
    const conversation = await this.#store.getConversation(tenant, conversationId);
    if (await this.#belongs(tenant, caller.userId, conversationId, conversation, "now")) {
      await this.#requireMessagesOf(tenant, conversationId, ids, "message_ids");
      return;
    }
    // Outside the conversation: only one's own messages, and "not tracked" looks like "not yours".
    const found = await this.#store.getMessages(tenant, ids);
    for (const id of ids) {
      const message = found.get(id);
      if (message?.conversationId !== conversationId || message.senderId !== caller.userId) {
        throw notYours("conversation_id");
      }
    }
  }

  async authorizeListReadMembers(
    tenant: string,
    caller: Caller,
    request: { conversationId: string; messageId: string },
  ): Promise<void> {
    const conversationId = requireId("conversation_id", request.conversationId);
    const messageId = requireId("message_id", request.messageId);
    const settings = this.#settingsOf(tenant);
    const message = (await this.#store.getMessages(tenant, [messageId])).get(messageId);
    const inConversation = message?.conversationId === conversationId ? message : undefined;
    if (caller.kind === "user" && inConversation?.senderId !== caller.userId) {
      const conversation = await this.#store.getConversation(tenant, conversationId);
      if (!(await this.#belongs(tenant, caller.userId, conversationId, conversation, "now"))) {
        throw notYours("conversation_id");
      }
      if (inConversation === undefined) throw notTracked(messageId, conversationId, "message_id");
      if (!settings.readMembersOpenToMembers) {
        throw new ReceiptError(
          "permission_denied",
          "only the sender may list who has read a message",
          "message_id",
        );
      }
    }
    // Unknown messages are the service's NOT_FOUND to report, with the field named.
    if (inConversation?.conversationType !== "group") return;
    const size = await this.#store.memberCountAt(
      tenant,
      inConversation.conversationId,
      inConversation.sentAt,
    );
    if (size > settings.maxGroupSizeForMemberLists) {
      throw memberListsWithheld(size, settings.maxGroupSizeForMemberLists, "message_id");
    }
  }

  /**
   * BatchGetReadMembers: for every message what ListReadMembers asks. Returns the tenant's
   * largest group with member lists, which the service checks per message with the group
   * sizes it reads for the counts anyway.
   */
  async authorizeBatchGetReadMembers(
    tenant: string,
    caller: Caller,
    request: { conversationId: string; messageIds: readonly string[] },
  ): Promise<{ readonly maxGroupSize: number }> {
    const settings = this.#settingsOf(tenant);
    const grant = { maxGroupSize: settings.maxGroupSizeForMemberLists };
    if (caller.kind === "service") return grant;
    const conversationId = requireId("conversation_id", request.conversationId);
    const ids = requireIdList(
      "message_ids",
      request.messageIds,
      limits.maxIdsPerBatchGetReadMembers,
    );
    const found = await this.#store.getMessages(tenant, ids);
    const sentByCaller = (id: string): boolean => {
      const message = found.get(id);
      return message?.conversationId === conversationId && message.senderId === caller.userId;
    };
    if (ids.every(sentByCaller)) return grant;
    const conversation = await this.#store.getConversation(tenant, conversationId);
    if (!(await this.#belongs(tenant, caller.userId, conversationId, conversation, "now"))) {
      throw notYours("conversation_id");
    }
    for (const [i, id] of ids.entries()) {
      if (found.get(id)?.conversationId !== conversationId) {
        throw notTracked(id, conversationId, `message_ids[${i}]`);
      }
    }
    const othersMessage = ids.findIndex((id) => !sentByCaller(id));
    if (!settings.readMembersOpenToMembers && othersMessage >= 0) {
      throw new ReceiptError(
        "permission_denied",
        "only the sender may list who has read a message",
        `message_ids[${othersMessage}]`,
      );
    }
    return grant;
  }

  /**
   * Authorizes a stream and returns the signal it must end on: `signal`, and for a user who
   * watches groups, their leaving one (an AccessEndedError, PERMISSION_DENIED, not resumable:
   * the same request would be refused).
   */
  async authorizeWatchReceipts(
    tenant: string,
    caller: Caller,
    request: { conversationIds: readonly string[]; senderId: string; readerId?: string },
    signal: AbortSignal = new AbortController().signal,
  ): Promise<AbortSignal> {
    if (caller.kind === "service") return signal;
    const readerId = optionalId("reader_id", request.readerId ?? "");
    if (readerId !== undefined) {
      // A user's own reads (its private ones too) are its own to follow, in any conversation.
      if (readerId === caller.userId) return signal;
      throw new ReceiptError(
        "permission_denied",
        "a user may follow only its own reads",
        "reader_id",
      );
    }
    const senderId = optionalId("sender_id", request.senderId);
    if (senderId !== undefined) {
      if (senderId !== caller.userId) {
        throw new ReceiptError(
          "permission_denied",
          "a user may watch only the messages they sent",
          "sender_id",
        );
      }
      // Only the user's own messages pass a sender filter, whatever the conversations.
      return signal;
    }
    if (request.conversationIds.length === 0) {
      throw new ReceiptError(
        "permission_denied",
        "a user must watch their own sender_id or conversations they belong to",
        "conversation_ids",
      );
    }
    requireIdList("conversation_ids", request.conversationIds, limits.maxConversationsPerWatch);
    const groups: string[] = [];
    for (const [i, conversationId] of request.conversationIds.entries()) {
      const conversation = await this.#store.getConversation(tenant, conversationId);
      if (!(await this.#belongs(tenant, caller.userId, conversationId, conversation, "now"))) {
        throw notYours(`conversation_ids[${i}]`);
      }
      // C2C participants never change; group members do.
      if (conversation?.type !== "c2c") groups.push(conversationId);
    }
    return this.#endOnLeaving(tenant, caller.userId, groups, signal);
  }

  #endOnLeaving(
    tenant: string,
    userId: string,
    groups: readonly string[],
    signal: AbortSignal,
  ): AbortSignal {
    const memberships = this.#memberships;
    if (memberships === undefined || groups.length === 0 || signal.aborted) return signal;
    const left = new AbortController();
    const stop = memberships.follow(tenant, groups, userId, (groupId) => {
      const i = groups.indexOf(groupId);
      left.abort(
        new AccessEndedError(
          "permission_denied",
          "the caller left this conversation; the stream ended",
          false,
          i < 0 ? "conversation_ids" : `conversation_ids[${i}]`,
        ),
      );
    });
    signal.addEventListener("abort", stop, { once: true });
    left.signal.addEventListener("abort", stop, { once: true });
    return AbortSignal.any([signal, left.signal]);
  }

  /** C2C: a participant. Group: a current member ("now"), or a member now or before ("ever"). */
  async #belongs(
    tenant: string,
    userId: string,
    conversationId: string,
    conversation: Conversation | undefined,
    when: "now" | "ever",
  ): Promise<boolean> {
    if (conversation?.type === "c2c") return conversation.participants.includes(userId);
    const latest = await this.#store.latestMemberships(tenant, conversationId, [userId]);
    const interval = latest.get(userId);
    if (interval === undefined) return false;
    return when === "ever" || interval.leftAt === undefined;
  }

  /** For a caller known to belong: every id must be a message of the conversation. */
  async #requireMessagesOf(
    tenant: string,
    conversationId: string,
    ids: readonly string[],
    field: string,
  ): Promise<void> {
    const found = await this.#store.getMessages(tenant, ids);
    for (const [i, id] of ids.entries()) {
      // A message of another conversation is reported as not tracked here: it is not the user's.
      if (found.get(id)?.conversationId !== conversationId) {
        throw notTracked(id, conversationId, `${field}[${i}]`);
      }
    }
  }

  #requireReceiptsOn(tenant: string, conversation: Conversation | undefined): void {
    if (conversation !== undefined && !this.#settingsOf(tenant).receipts[conversation.type]) {
      throw receiptsOff(conversation.type, "conversation_id");
    }
  }
}

/** The reader a call acts as: users only as themselves, empty meaning the token's user. */
function actingAs(caller: Caller, readerId: string, field = "reader_id"): string {
  if (caller.kind === "service") return readerId;
  if (readerId !== "" && readerId !== caller.userId) {
    throw new ReceiptError("permission_denied", "a user may act only as themselves", field);
  }
  return caller.userId;
}

const notYours = (field: string): ReceiptError =>
  new ReceiptError("permission_denied", "not a conversation of the caller", field);

const notTracked = (id: string, conversationId: string, field: string): ReceiptError =>
  new ReceiptError(
    "not_found",
    `message ${id} is not tracked in conversation ${conversationId}`,
    field,
  );

const receiptsOff = (type: ConversationType, field: string): ReceiptError =>
  new ReceiptError(
    "failed_precondition",
    `read receipts are turned off for ${type === "c2c" ? "C2C" : "group"} conversations of this tenant`,
    field,
  );
