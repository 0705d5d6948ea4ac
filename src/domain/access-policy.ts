import type {
  Conversation,
  MembershipInterval,
  MessageStore,
  ReceiptStore,
} from "../store/receipt-store.js";
import {
  notTracked,
  notYours,
  receiptsOff,
  refused,
  requireMessagesOf,
  senderOnly,
} from "./access-refusals.js";
import { actingAs, type Caller, requireService, viewerOf } from "./caller.js";
import { refuseUsersBeingErased } from "./erasure-guard.js";
import { AccessEndedError, memberListsWithheld } from "./errors.js";
import { limits } from "./limits.js";
import type { MembershipMonitor } from "./membership-monitor.js";
import type { ConversationType, TrackedMessage } from "./model.js";
import { defaultTenantSettings, type TenantSettings } from "./tenant-settings.js";
import { optionalId, requireId, requireIdList } from "./validate.js";

export interface AccessPolicyDeps {
  /** What the rules read: conversations, messages, memberships, erasures. */
  readonly store: Pick<MessageStore, "getConversation" | "getMessages"> &
    Pick<ReceiptStore, "latestMemberships" | "memberCountAt" | "erasureOf">;
  /** The tenant's current settings; reloadable, so asked on every call. */
  readonly settingsOf?: (tenant: string) => TenantSettings;
  /** Follows the groups users' open streams watch; without it, streams never end on leaving. */
  readonly memberships?: MembershipMonitor;
}

/**
 * What a call on messages of one conversation may go on with: its ids checked, and the messages
 * the policy read to decide, so that the service reads them no second time. `found` holds what
 * is tracked of the ids, of any conversation (the service reports the rest).
 */
export interface MessagesGrant {
  readonly conversationId: string;
  readonly messageIds: readonly string[];
  readonly found: ReadonlyMap<string, TrackedMessage>;
}

/** MarkConversationRead may go on, acting as `readerId`, with the rows read to decide. */
export interface MarkReadGrant {
  readonly readerId: string;
  readonly conversationId: string;
  readonly conversation: Conversation | undefined;
  /** The reader's latest membership of the group, when the policy read it (user callers). */
  readonly readerHistory: ReadonlyMap<string, MembershipInterval> | undefined;
}

/** A user's standing in a conversation, and the membership read to know it (groups). */
interface Standing {
  /** A participant (C2C) or a current member (group). */
  readonly now: boolean;
  /** A participant (C2C) or a member now or before (group). */
  readonly ever: boolean;
  readonly history: ReadonlyMap<string, MembershipInterval> | undefined;
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
 *
 * Each service calls it first and goes on with the grant it returns: the ids it checked and the
 * rows it read, so that every id is checked and every row read once per call.
 */
export class AccessPolicy {
  readonly #store: AccessPolicyDeps["store"];
  readonly #settingsOf: (tenant: string) => TenantSettings;
  readonly #memberships: MembershipMonitor | undefined;

  constructor(deps: AccessPolicyDeps) {
    this.#store = deps.store;
    this.#settingsOf = deps.settingsOf ?? (() => defaultTenantSettings);
    this.#memberships = deps.memberships;
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
    requireService(caller, "TrackMessages");
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

  /**
   * Returns the reader to record (the request's, or the token's user when it left it empty;
   * the service checks it is an id) with the messages.
   */
  async authorizeSendReceipts(
    tenant: string,
    caller: Caller,
    request: { conversationId: string; readerId: string; messageIds: readonly string[] },
  ): Promise<MessagesGrant & { readonly readerId: string }> {
    const readerId = actingAs(caller, request.readerId);
    const conversationId = requireId("conversation_id", request.conversationId);
    const messageIds = requireIdList(
      "message_ids",
      request.messageIds,
      limits.maxIdsPerReceiptCall,
    );
    const [conversation, found] = await Promise.all([
      this.#store.getConversation(tenant, conversationId),
      this.#store.getMessages(tenant, messageIds),
    ]);
    if (caller.kind === "user") {
      if (!(await this.#standing(tenant, readerId, conversationId, conversation)).ever) {
        throw notYours("conversation_id");
      }
      requireMessagesOf(found, conversationId, messageIds, "message_ids");
    }
    this.#requireReceiptsOn(tenant, conversation);
    await refuseUsersBeingErased(this.#store, tenant, [{ userId: readerId, field: "reader_id" }]);
    return { readerId, conversationId, messageIds, found };
  }

  async authorizeMarkConversationRead(
    tenant: string,
    caller: Caller,
    request: { conversationId: string; readerId: string },
  ): Promise<MarkReadGrant> {
    const readerId = actingAs(caller, request.readerId);
    const conversationId = requireId("conversation_id", request.conversationId);
    const conversation = await this.#store.getConversation(tenant, conversationId);
    let readerHistory: MarkReadGrant["readerHistory"];
    if (caller.kind === "user") {
      const standing = await this.#standing(tenant, readerId, conversationId, conversation);
      if (!standing.ever) throw notYours("conversation_id");
      readerHistory = standing.history;
    }
    this.#requireReceiptsOn(tenant, conversation);
    await refuseUsersBeingErased(this.#store, tenant, [{ userId: readerId, field: "reader_id" }]);
    return { readerId, conversationId, conversation, readerHistory };
  }

  /** Returns the messages and whose view to answer with (viewerOf). */
  async authorizeGetReceipts(
    tenant: string,
    caller: Caller,
    request: { conversationId: string; messageIds: readonly string[]; viewerId?: string },
  ): Promise<MessagesGrant & { readonly viewerId: string | undefined }> {
    const conversationId = requireId("conversation_id", request.conversationId);
    const messageIds = requireIdList(
      "message_ids",
      request.messageIds,
      limits.maxIdsPerReceiptCall,
    );
    const viewerIdOf = () =>
      optionalId("viewer_id", viewerOf(caller, request.viewerId ?? "") ?? "");
    if (caller.kind === "service") {
      const viewerId = viewerIdOf();
      const found = await this.#store.getMessages(tenant, messageIds);
      return { conversationId, messageIds, found, viewerId };
    }
    const [conversation, found] = await Promise.all([
      this.#store.getConversation(tenant, conversationId),
      this.#store.getMessages(tenant, messageIds),
    ]);
    if ((await this.#standing(tenant, caller.userId, conversationId, conversation)).now) {
      requireMessagesOf(found, conversationId, messageIds, "message_ids");
    } else {
      // Outside the conversation: only one's own messages, and "not tracked" looks like "not yours".
      for (const id of messageIds) {
        const message = found.get(id);
        if (message?.conversationId !== conversationId || message.senderId !== caller.userId) {
          throw notYours("conversation_id");
        }
      }
    }
    return { conversationId, messageIds, found, viewerId: viewerIdOf() };
  }

  async authorizeListReadMembers(
    tenant: string,
    caller: Caller,
    request: { conversationId: string; messageId: string },
  ): Promise<{ readonly conversationId: string; readonly messageId: string } & MessagesGrant> {
    const conversationId = requireId("conversation_id", request.conversationId);
    const messageId = requireId("message_id", request.messageId);
    const settings = this.#settingsOf(tenant);
    const found = await this.#store.getMessages(tenant, [messageId]);
    const message = found.get(messageId);
    const inConversation = message?.conversationId === conversationId ? message : undefined;
    if (caller.kind === "user" && inConversation?.senderId !== caller.userId) {
      const conversation = await this.#store.getConversation(tenant, conversationId);
      if (!(await this.#standing(tenant, caller.userId, conversationId, conversation)).now) {
        throw notYours("conversation_id");
      }
      if (inConversation === undefined) throw notTracked(messageId, conversationId, "message_id");
      if (!settings.readMembersOpenToMembers) throw senderOnly("message_id");
    }
    const grant = { conversationId, messageId, messageIds: [messageId], found };
    // Unknown messages are the service's NOT_FOUND to report, with the field named.
    if (inConversation?.conversationType !== "group") return grant;
    const size = await this.#store.memberCountAt(
      tenant,
      inConversation.conversationId,
      inConversation.sentAt,
    );
    if (size > settings.maxGroupSizeForMemberLists) {
      throw memberListsWithheld(size, settings.maxGroupSizeForMemberLists, "message_id");
    }
    return grant;
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
  ): Promise<MessagesGrant & { readonly maxGroupSize: number }> {
    const settings = this.#settingsOf(tenant);
    const conversationId = requireId("conversation_id", request.conversationId);
    const messageIds = requireIdList(
      "message_ids",
      request.messageIds,
      limits.maxIdsPerBatchGetReadMembers,
    );
    const found = await this.#store.getMessages(tenant, messageIds);
    const grant = {
      conversationId,
      messageIds,
      found,
      maxGroupSize: settings.maxGroupSizeForMemberLists,
    };
    if (caller.kind === "service") return grant;
    const sentByCaller = (id: string): boolean => {
      const message = found.get(id);
      return message?.conversationId === conversationId && message.senderId === caller.userId;
    };
    if (messageIds.every(sentByCaller)) return grant;
    const conversation = await this.#store.getConversation(tenant, conversationId);
    if (!(await this.#standing(tenant, caller.userId, conversationId, conversation)).now) {
      throw notYours("conversation_id");
    }
    for (const [i, id] of messageIds.entries()) {
      if (found.get(id)?.conversationId !== conversationId) {
        throw notTracked(id, conversationId, `message_ids[${i}]`);
      }
    }
    const othersMessage = messageIds.findIndex((id) => !sentByCaller(id));
    if (!settings.readMembersOpenToMembers && othersMessage >= 0) {
      throw senderOnly(`message_ids[${othersMessage}]`);
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
      throw refused("a user may follow only its own reads", "reader_id");
    }
    const senderId = optionalId("sender_id", request.senderId);
    if (senderId !== undefined) {
      if (senderId !== caller.userId) {
        throw refused("a user may watch only the messages they sent", "sender_id");
      }
      // Only the user's own messages pass a sender filter, whatever the conversations.
      return signal;
    }
    if (request.conversationIds.length === 0) {
      throw refused(
        "a user must watch their own sender_id or conversations they belong to",
        "conversation_ids",
      );
    }
    requireIdList("conversation_ids", request.conversationIds, limits.maxConversationsPerWatch);
    const groups: string[] = [];
    for (const [i, conversationId] of request.conversationIds.entries()) {
      const conversation = await this.#store.getConversation(tenant, conversationId);
      if (!(await this.#standing(tenant, caller.userId, conversationId, conversation)).now) {
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
  async #standing(
    tenant: string,
    userId: string,
    conversationId: string,
    conversation: Conversation | undefined,
  ): Promise<Standing> {
    if (conversation?.type === "c2c") {
      const participant = conversation.participants.includes(userId);
      return { now: participant, ever: participant, history: undefined };
    }
    const history = await this.#store.latestMemberships(tenant, conversationId, [userId]);
    const interval = history.get(userId);
    return {
      now: interval !== undefined && interval.leftAt === undefined,
      ever: interval !== undefined,
      history,
    };
  }

  #requireReceiptsOn(tenant: string, conversation: Conversation | undefined): void {
    if (conversation !== undefined && !this.#settingsOf(tenant).receipts[conversation.type]) {
      throw receiptsOff(conversation.type, "conversation_id");
    }
  }
}
