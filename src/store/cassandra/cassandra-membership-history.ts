import type { types } from "cassandra-driver";
import { isMemberAt, type Member } from "../../domain/model.js";
import { chunk } from "../chunk.js";
import { membershipAtEachProbe } from "../derived-reads.js";
import { mapConcurrently } from "../map-concurrently.js";
import type {
  MembershipAt,
  MembershipHistory,
  MembershipInterval,
  MembershipProbe,
} from "../receipt-store.js";
import { TurnSharedReads } from "../turn-shared-reads.js";
import { CassandraGroupChanges, groupLockOf } from "./cassandra-group-changes.js";
import type { CassandraUserIndex } from "./cassandra-user-index.js";
import { type CqlContext, optionalNumber, read, toNumber } from "./cql-values.js";
import { MembershipMemory } from "./membership-memory.js";

/** Users per `user_id IN ?` read. */
const inListSize = 100;

/**
 * Membership history (tables memberships and group_sizes): intervals per
 * user, and the member count from each change on, so that the count at any
 * time is one read. Changes go through the group's lock (CassandraGroupChanges);
 * what was read is kept in memory per group version (MembershipMemory).
 */
export class CassandraMembershipHistory implements Omit<MembershipHistory, "listUnreadMembers"> {
  readonly #context: CqlContext;
  readonly #cql: ReturnType<typeof statements>;
  readonly #changes: CassandraGroupChanges;
  readonly #memory: MembershipMemory | undefined;
  readonly #index: CassandraUserIndex;
  /** Group-version reads of this event-loop turn, by tenant and group id. */
  readonly #versionReads = new TurnSharedReads<number | undefined>();

  constructor(
    context: CqlContext,
    options: {
      /** See CassandraGroupChanges. */
      readonly lockLeaseMs: number;
      /** Membership facts kept in memory; 0 keeps none. */
      readonly memoryEntries: number;
      /** Where each user's groups are noted before they join. */
      readonly index: CassandraUserIndex;
    },
  ) {
    this.#context = context;
    this.#index = options.index;
    this.#cql = statements(context.keyspace);
    this.#changes = new CassandraGroupChanges(context, {
      leaseMs: options.lockLeaseMs,
      latestMemberships: (tenant, groupId, userIds) =>
        this.latestMemberships(tenant, groupId, userIds),
    });
    if (options.memoryEntries > 0) this.#memory = new MembershipMemory(options.memoryEntries);
  }

  async latestMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
  ): Promise<Map<string, MembershipInterval>> {
    const latest = new Map<string, MembershipInterval>();
    const lists = chunk([...new Set(userIds)], inListSize);
    await mapConcurrently(lists, this.#context.concurrency, async (list) => {
      const result = await this.#context.session.execute(
        this.#cql.membershipsOfUsers,
        [tenant, groupId, list],
        read,
      );
      // Rows come by user, latest interval first.
      for (const row of result.rows) {
        const userId = row.get("user_id") as string;
        if (!latest.has(userId)) latest.set(userId, intervalOf(row));
      }
    });
    return latest;
  }

  async openMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
    joinedAt: number,
  ): Promise<void> {
    await this.#index.noteConversation(tenant, userIds, groupId);
    await this.#changes.change(tenant, groupId, "open", userIds, joinedAt);
  }

  /** Erases the user's intervals in the group and its place in the group's counts. */
  eraseUser(tenant: string, groupId: string, userId: string): Promise<number> {
    return this.#changes.erase(tenant, groupId, userId);
  }

  /** Every interval of the user in the group, latest first. */
  intervalsOfUser(tenant: string, groupId: string, userId: string): Promise<MembershipInterval[]> {
    return this.#intervalsOf(tenant, groupId, userId);
  }

  closeMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
    leftAt: number,
  ): Promise<void> {
    return this.#changes.change(tenant, groupId, "close", userIds, leftAt);
  }

  async wasMemberAt(
    tenant: string,
    groupId: string,
    userId: string,
    times: readonly number[],
  ): Promise<boolean[]> {
    const intervals = await this.#intervalsOf(tenant, groupId, userId);
    return times.map((t) => isMemberAt(intervals, t));
  }

  /**
   * One single-partition read whatever t is: group_sizes keeps the member
   * count from each change on. A lock left by a crashed change is recovered
   * first, so that the count agrees with the membership rows.
   */
  async memberCountAt(tenant: string, groupId: string, at: number): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const row = await this.#sizeRowAt(tenant, groupId, at);
      const lock = row
        ? groupLockOf(row)
        : await this.#changes.lockOf(tenant, groupId, { serial: false });
      if (attempt === 0 && (await this.#changes.recoverIfStale(tenant, groupId, lock))) continue;
      return membersOf(row);
    }
  }

  /**
   * From this process's memory of the group when it holds the group's
   * current version, else from Cassandra (then remembered); read through
   * while a membership change of the group is in progress.
   */
  async membershipAt(
    tenant: string,
    groupId: string,
    probes: readonly MembershipProbe[],
  ): Promise<MembershipAt[]> {
    const memory = this.#memory;
    const version = await this.#versionOf(tenant, groupId);
    const { concurrency } = this.#context;
    if (memory === undefined || version === undefined) {
      return membershipAtEachProbe(this, tenant, groupId, probes, concurrency);
    }
    const counts = new Map<number, number>();
    const intervals = new Map<string, readonly MembershipInterval[]>();
    for (const { userId, at } of probes) {
      const count = memory.countAt(tenant, groupId, version, at);
      if (count !== undefined) counts.set(at, count);
      const known = memory.intervalsOf(tenant, groupId, version, userId);
      if (known !== undefined) intervals.set(userId, known);
    }
    const times = [...new Set(probes.map((p) => p.at))].filter((at) => !counts.has(at));
    const users = [...new Set(probes.map((p) => p.userId))].filter((u) => !intervals.has(u));
    await Promise.all([
      mapConcurrently(times, concurrency, async (at) => {
        const members = membersOf(await this.#sizeRowAt(tenant, groupId, at));
        counts.set(at, members);
        memory.rememberCount(tenant, groupId, version, at, members);
      }),
      mapConcurrently(users, concurrency, async (userId) => {
        const found = await this.#intervalsOf(tenant, groupId, userId);
        intervals.set(userId, found);
        memory.rememberIntervals(tenant, groupId, version, userId, found);
      }),
    ]);
    return probes.map(({ userId, at }) => ({
      memberCount: counts.get(at) ?? 0,
      wasMember: isMemberAt(intervals.get(userId) ?? [], at),
    }));
  }

  async listCurrentMembers(
    tenant: string,
    groupId: string,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<Member[]> {
    const members: Member[] = [];
    let previous: string | undefined;
    for await (const row of this.#context.session.rows(
      this.#cql.membershipsAfter,
      [tenant, groupId, afterUserId ?? ""],
      { ...read, fetchSize: Math.min(5_000, limit * 2 + 16) },
    )) {
      const userId = row.get("user_id") as string;
      if (userId === previous) continue; // an older interval of the same user
      previous = userId;
      if (row.get("left_at") !== null) continue;
      members.push({ userId, joinedAt: toNumber(row.get("joined_at")) });
      if (members.length >= limit) break;
    }
    return members;
  }

  /**
   * Users who were members at `at`, in user id order, after `afterUserId`,
   * read `fetchSize` interval rows at a time.
   */
  async *membersAt(
    tenant: string,
    groupId: string,
    at: number,
    afterUserId: string | undefined,
    fetchSize: number,
  ): AsyncGenerator<string> {
    let current: string | undefined;
    let member = false;
    for await (const row of this.#context.session.rows(
      this.#cql.membershipsAfter,
      [tenant, groupId, afterUserId ?? ""],
      { ...read, fetchSize },
    )) {
      const userId = row.get("user_id") as string;
      if (userId !== current) {
        if (member && current !== undefined) yield current;
        current = userId;
        member = false;
      }
      if (isMemberAt([intervalOf(row)], at)) member = true;
    }
    if (member && current !== undefined) yield current;
  }

  async #intervalsOf(
    tenant: string,
    groupId: string,
    userId: string,
  ): Promise<MembershipInterval[]> {
    const result = await this.#context.session.execute(
      this.#cql.membershipsOfUser,
      [tenant, groupId, userId],
      read,
    );
    return result.rows.map(intervalOf);
  }

  /** The group_sizes row in force at `at` (with the lock's static columns), if any. */
  async #sizeRowAt(tenant: string, groupId: string, at: number): Promise<types.Row | undefined> {
    const { session, long } = this.#context;
    const result = await session.execute(this.#cql.sizeAt, [tenant, groupId, long(at)], read);
    return result.first() ?? undefined;
  }

  /**
   * The group's current version (the write time of its latest completed
   * change), or undefined while a change holds the group's lock (its rows may
   * be half written) or when nothing is kept in memory.
   *
   * The calls of one event-loop turn share one read (TurnSharedReads): each
   * began before it was sent, so it sees every change acknowledged before that
   * call began.
   */
  #versionOf(tenant: string, groupId: string): Promise<number | undefined> {
    if (this.#memory === undefined) return Promise.resolve(undefined);
    return this.#versionReads.read(`${tenant}\u0000${groupId}`, async () => {
      const lock = await this.#changes.lockOf(tenant, groupId, { serial: false });
      return lock?.op !== undefined ? undefined : (lock?.lastTs ?? 0);
    });
  }
}

function intervalOf(row: types.Row): MembershipInterval {
  return { joinedAt: toNumber(row.get("joined_at")), leftAt: optionalNumber(row.get("left_at")) };
}

const membersOf = (row: types.Row | undefined): number =>
  row ? Number(row.get("members") ?? 0) : 0;

function statements(keyspace: string) {
  const t = (table: string) => `${keyspace}.${table}`;
  return {
    membershipsOfUsers: `SELECT user_id, joined_at, left_at FROM ${t("memberships")}
      WHERE tenant = ? AND group_id = ? AND user_id IN ?`,
    membershipsOfUser: `SELECT joined_at, left_at FROM ${t("memberships")}
      WHERE tenant = ? AND group_id = ? AND user_id = ?`,
    membershipsAfter: `SELECT user_id, joined_at, left_at FROM ${t("memberships")}
      WHERE tenant = ? AND group_id = ? AND user_id > ?`,
    sizeAt: `SELECT lock_op, lock_since, members FROM ${t("group_sizes")}
      WHERE tenant = ? AND group_id = ? AND changed_at <= ? LIMIT 1`,
  };
}
