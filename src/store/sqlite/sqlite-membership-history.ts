import type { DatabaseSync, StatementSync } from "node:sqlite";
import { isMemberAt, type Member } from "../../domain/model.js";
import type {
  MembershipAt,
  MembershipHistory,
  MembershipInterval,
  MembershipProbe,
} from "../receipt-store.js";
import { type KnownGroup, SqliteMembershipMemory } from "./sqlite-membership-memory.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

interface IntervalRow {
  joined_at: number;
  left_at: number | null;
}

const intervalOf = (row: IntervalRow): MembershipInterval => ({
  joinedAt: row.joined_at,
  leftAt: row.left_at ?? undefined,
});

/**
 * Membership history (table memberships) and each group's current member count (groups),
 * kept in the transaction of each change so that counts at the present are one row.
 */
export class SqliteMembershipHistory implements Omit<MembershipHistory, "listUnreadMembers"> {
  readonly #writes: SqliteWriteBatcher;
  readonly #sql: ReturnType<typeof prepareStatements>;
  readonly #memory: SqliteMembershipMemory;

  constructor(db: DatabaseSync, writes: SqliteWriteBatcher) {
    this.#writes = writes;
    this.#sql = prepareStatements(db);
    this.#memory = new SqliteMembershipMemory(db);
  }

  async latestMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
  ): Promise<Map<string, MembershipInterval>> {
    const latest = new Map<string, MembershipInterval>();
    for (const userId of userIds) {
      const row = this.#sql.latestMembership.get(tenant, groupId, userId) as
        | IntervalRow
        | undefined;
      if (row !== undefined) latest.set(userId, intervalOf(row));
    }
    return latest;
  }

  async openMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
    joinedAt: number,
  ): Promise<void> {
    await this.#writes.write(() => {
      for (const userId of userIds) this.#sql.openMembership.run(tenant, groupId, userId, joinedAt);
      this.#sql.bumpGroup.run(tenant, groupId, userIds.length, joinedAt);
    });
  }

  async closeMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
    leftAt: number,
  ): Promise<void> {
    await this.#writes.write(() => {
      let closed = 0;
      for (const userId of userIds) {
        closed += Number(this.#sql.closeMembership.run(leftAt, tenant, groupId, userId).changes);
      }
      this.#sql.bumpGroup.run(tenant, groupId, -closed, leftAt);
    });
  }

  async wasMemberAt(
    tenant: string,
    groupId: string,
    userId: string,
    times: readonly number[],
  ): Promise<boolean[]> {
    const intervals = this.#intervalsOf(
      this.#memory.group(tenant, groupId),
      tenant,
      groupId,
      userId,
    );
    return times.map((t) => isMemberAt(intervals, t));
  }

  async memberCountAt(tenant: string, groupId: string, at: number): Promise<number> {
    return this.#countAt(this.#memory.group(tenant, groupId), tenant, groupId, at);
  }

  async membershipAt(
    tenant: string,
    groupId: string,
    probes: readonly MembershipProbe[],
  ): Promise<MembershipAt[]> {
    const known = this.#memory.group(tenant, groupId);
    return probes.map(({ userId, at }) => ({
      memberCount: this.#countAt(known, tenant, groupId, at),
      wasMember: isMemberAt(this.#intervalsOf(known, tenant, groupId, userId), at),
    }));
  }

  #intervalsOf(
    known: KnownGroup,
    tenant: string,
    groupId: string,
    userId: string,
  ): readonly MembershipInterval[] {
    return known.intervalsOf(userId, () =>
      (this.#sql.membershipsOfUser.all(tenant, groupId, userId) as unknown as IntervalRow[]).map(
        intervalOf,
      ),
    );
  }

  #countAt(known: KnownGroup, tenant: string, groupId: string, at: number): number {
    return known.countAt(at, () => {
      const group = this.#sql.getGroup.get(tenant, groupId) as
        | { member_count: number; last_change_at: number }
        | undefined;
      if (group === undefined) return 0;
      if (at >= group.last_change_at) return group.member_count;
      return (this.#sql.countMembersAt.get(tenant, groupId, at, at) as { n: number }).n;
    });
  }

  async listCurrentMembers(
    tenant: string,
    groupId: string,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<Member[]> {
    const rows = this.#sql.currentMembers.all(
      tenant,
      groupId,
      afterUserId ?? "",
      limit,
    ) as unknown as { user_id: string; joined_at: number }[];
    return rows.map((row) => ({ userId: row.user_id, joinedAt: row.joined_at }));
  }
}

function prepareStatements(db: DatabaseSync) {
  const q = (sql: string): StatementSync => db.prepare(sql);
  return {
    latestMembership: q(
      `SELECT joined_at, left_at FROM memberships
       WHERE tenant = ? AND group_id = ? AND user_id = ? ORDER BY joined_at DESC LIMIT 1`,
    ),
    membershipsOfUser: q(
      "SELECT joined_at, left_at FROM memberships WHERE tenant = ? AND group_id = ? AND user_id = ?",
    ),
    openMembership: q(
      // Re-opening an empty interval [t, t) when a user leaves and rejoins within one millisecond.
      `INSERT INTO memberships (tenant, group_id, user_id, joined_at, left_at) VALUES (?, ?, ?, ?, NULL)
       ON CONFLICT (tenant, group_id, user_id, joined_at) DO UPDATE SET left_at = NULL`,
    ),
    closeMembership: q(
      `UPDATE memberships SET left_at = ?
       WHERE tenant = ? AND group_id = ? AND user_id = ? AND left_at IS NULL`,
    ),
    bumpGroup: q(
      `INSERT INTO groups (tenant, group_id, member_count, last_change_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (tenant, group_id) DO UPDATE SET
         member_count = member_count + excluded.member_count,
         last_change_at = max(last_change_at, excluded.last_change_at)`,
    ),
    getGroup: q(
      "SELECT member_count, last_change_at FROM groups WHERE tenant = ? AND group_id = ?",
    ),
    countMembersAt: q(
      `SELECT count(*) AS n FROM memberships
       WHERE tenant = ? AND group_id = ? AND joined_at <= ? AND (left_at IS NULL OR left_at > ?)`,
    ),
    currentMembers: q(
      `SELECT user_id, joined_at FROM memberships
       WHERE tenant = ? AND group_id = ? AND left_at IS NULL AND user_id > ?
       ORDER BY user_id LIMIT ?`,
    ),
  };
}
