import type { ChangeFeed } from "../store/change-feed.js";
import type { MembershipHistory, MessageStore, ReceiptLedger } from "../store/receipt-store.js";
import type { UserDataStore } from "../store/user-data-store.js";
import { type Caller, requireService } from "./caller.js";
import { refuseUsersBeingErased } from "./erasure-guard.js";
import { ReceiptError } from "./errors.js";
import { limits } from "./limits.js";
import type { Member, Page } from "./model.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import { pageSize, requireId, requireIdList, requireTime } from "./validate.js";

/** What membership changes read and write: the history, the group, the withdrawn receipts. */
type MembershipServiceStore = MembershipHistory &
  Pick<MessageStore, "getConversation"> &
  Pick<ReceiptLedger, "deleteReceiptsFrom"> &
  Pick<UserDataStore, "erasureOf">;

/** The whole service is the tenant's backend's. */
const rpc = "MembershipService";

/**
 * Membership history of groups: each user has non-overlapping intervals
 * [joined_at, left_at). Events of one user must come in time order; a
 * removal that lands before messages the user had read withdraws those
 * receipts, since the user was never in those messages' audience.
 */
export class MembershipService {
  readonly #store: MembershipServiceStore;
  readonly #feed: ChangeFeed | undefined;
  readonly #clock: () => number;
  readonly #onRemoved: ((tenant: string, groupId: string) => void) | undefined;

  constructor(deps: {
    store: MembershipServiceStore;
    feed?: ChangeFeed;
    clock?: () => number;
    /** Told after members left a group through this instance (their open streams end). */
    onMembersRemoved?: (tenant: string, groupId: string) => void;
  }) {
    this.#store = deps.store;
    this.#feed = deps.feed;
    this.#clock = deps.clock ?? Date.now;
    this.#onRemoved = deps.onMembersRemoved;
  }

  async addMembers(
    tenant: string,
    caller: Caller,
    request: { groupId: string; userIds: readonly string[]; joinedAt: number | undefined },
  ): Promise<{ addedCount: number }> {
    requireService(caller, rpc);
    const { groupId, userIds, at } = await this.#validate(
      tenant,
      request,
      "joined_at",
      request.joinedAt,
    );
    await refuseUsersBeingErased(
      this.#store,
      tenant,
      userIds.map((userId, i) => ({ userId, field: `user_ids[${i}]` })),
    );
    const latest = await this.#store.latestMemberships(tenant, groupId, userIds);
    const joining: string[] = [];
    const seen = new Set<string>();
    for (const [i, userId] of userIds.entries()) {
      if (seen.has(userId)) continue;
      seen.add(userId);
      const interval = latest.get(userId);
      if (interval !== undefined && interval.leftAt === undefined) continue;
      if (interval?.leftAt !== undefined && interval.leftAt > at) {
        throw new ReceiptError(
          "failed_precondition",
          `user ${userId} left at ${new Date(interval.leftAt).toISOString()}, after joined_at`,
          `user_ids[${i}]`,
        );
      }
      joining.push(userId);
    }
    if (joining.length > 0) await this.#store.openMemberships(tenant, groupId, joining, at);
    return { addedCount: joining.length };
  }

  async removeMembers(
    tenant: string,
    caller: Caller,
    request: { groupId: string; userIds: readonly string[]; leftAt: number | undefined },
  ): Promise<{ removedCount: number }> {
    requireService(caller, rpc);
    const { groupId, userIds, at } = await this.#validate(
      tenant,
      request,
      "left_at",
      request.leftAt,
    );
    const latest = await this.#store.latestMemberships(tenant, groupId, userIds);
    const leaving: string[] = [];
    const seen = new Set<string>();
    for (const [i, userId] of userIds.entries()) {
      if (seen.has(userId)) continue;
      seen.add(userId);
      const interval = latest.get(userId);
      if (interval === undefined || interval.leftAt !== undefined) continue;
      if (interval.joinedAt > at) {
        throw new ReceiptError(
          "failed_precondition",
          `user ${userId} joined at ${new Date(interval.joinedAt).toISOString()}, after left_at`,
          `user_ids[${i}]`,
        );
      }
      leaving.push(userId);
    }
    if (leaving.length === 0) return { removedCount: 0 };
    await this.#store.closeMemberships(tenant, groupId, leaving, at);
    this.#onRemoved?.(tenant, groupId);
    for (const userId of leaving) {
      const withdrawn = await this.#store.deleteReceiptsFrom(tenant, groupId, userId, at);
      // Counts of those messages go down: the change log must not hold them up at the old ones.
      // Best effort: the removal is stored, and a retry would find nothing left to withdraw.
      // Unreachable, the log keeps announcing those messages' old highest count until their
      // count passes it again or the retention window ends (docs/streaming.md).
      await this.#feed
        ?.forgetReceipts(
          tenant,
          withdrawn.map((messageId) => ({ messageId, readerId: userId })),
        )
        .catch(() => undefined);
    }
    return { removedCount: leaving.length };
  }

  async listMembers(
    tenant: string,
    caller: Caller,
    request: { groupId: string; pageSize: number; pageToken: string },
  ): Promise<Page<Member>> {
    requireService(caller, rpc);
    const groupId = requireId("group_id", request.groupId);
    const size = pageSize(request.pageSize);
    const scope = `members/${groupId}`;
    const after = decodePageToken("page_token", request.pageToken, scope);
    const rows = await this.#store.listCurrentMembers(tenant, groupId, after, size + 1);
    const items = rows.slice(0, size);
    const last = items.at(-1);
    return {
      items,
      nextPageToken:
        rows.length > size && last !== undefined ? encodePageToken(scope, last.userId) : "",
    };
  }

  async #validate(
    tenant: string,
    request: { groupId: string; userIds: readonly string[] },
    timeField: string,
    time: number | undefined,
  ): Promise<{ groupId: string; userIds: string[]; at: number }> {
    const groupId = requireId("group_id", request.groupId);
    const userIds = requireIdList("user_ids", request.userIds, limits.maxUsersPerMembershipCall);
    const at = requireTime(timeField, time, this.#clock());
    const conversation = await this.#store.getConversation(tenant, groupId);
    if (conversation?.type === "c2c") {
      throw new ReceiptError(
        "failed_precondition",
        `${groupId} is a C2C conversation, not a group`,
        "group_id",
      );
    }
    return { groupId, userIds, at };
  }
}
