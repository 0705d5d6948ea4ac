import { types } from "cassandra-driver";
import { StoreUnavailableError } from "../../domain/errors.js";
import { isMemberAt } from "../../domain/model.js";
import { chunk } from "../chunk.js";
import { mapConcurrently } from "../map-concurrently.js";
import type { MembershipInterval } from "../receipt-store.js";
import { type CqlContext, optionalNumber, read, toNumber, write } from "./cql-values.js";

/** Memberships written per single-partition batch. */
const membershipBatch = 100;
/**
 * Batches of one change in flight at once: they all write the group's one
 * partition, so more would queue on the same replicas rather than finish sooner.
 */
const planBatchesInFlight = 4;

/** The lock columns of a group_sizes partition (static). */
export interface GroupLock {
  /** The change holding the lock, if any. */
  readonly op: types.Uuid | undefined;
  readonly since: number | undefined;
  /** Write time (µs) of the group's latest completed change: the group's version. */
  readonly lastTs: number | undefined;
}

/** The lock columns as a row of group_sizes holds them (every row carries the statics). */
export function groupLockOf(row: types.Row | undefined | null): GroupLock | undefined {
  if (!row) return undefined;
  const op = row.get("lock_op") as types.Uuid | null | undefined;
  return {
    op: op ?? undefined,
    since: optionalNumber(row.get("lock_since")),
    lastTs: optionalNumber(row.get("last_ts")),
  };
}

interface MembershipPlan {
  /** erase: deletes the users' intervals (users holds each interval's joined_at). */
  readonly kind: "open" | "close" | "erase";
  /** Write time (µs) of every row of the change. */
  readonly ts: number;
  /** [user, joined_at]: of the new interval (open), of the interval it closes (close). */
  readonly users: readonly (readonly [string, number])[];
  readonly at: number;
  /** [changed_at, members]: the group_sizes rows the change writes, absolute values. */
  readonly sizes: readonly (readonly [number, number])[];
}

/**
 * A membership change, exact under crashes and retries:
 * 1. take the group's lock (an LWT on the static lock_op of group_sizes);
 * 2. read the state and plan every row to write, as absolute values with one
 *    write time later than the group's last change;
 * 3. insert the plan (IF NOT EXISTS into membership_changes: a recovery that
 *    fenced this change off makes it stop here, before writing anything);
 * 4. write the rows, then release the lock.
 * Whoever finds the lock older than the lease completes the change from its
 * plan, or fences it off when it has none. Rows written twice are the same
 * rows at the same write time, so a slow owner and a recovery can overlap.
 */
export class CassandraGroupChanges {
  readonly #context: CqlContext;
  readonly #cql: ReturnType<typeof statements>;
  readonly #leaseMs: number;
  readonly #latestMemberships: LatestMemberships;

  constructor(
    context: CqlContext,
    options: {
      /** A lock older than this is taken to belong to a crashed process. */
      readonly leaseMs: number;
      /** Read under the lock, to plan the change. */
      readonly latestMemberships: LatestMemberships;
    },
  ) {
    this.#context = context;
    this.#cql = statements(context.keyspace);
    this.#leaseMs = options.leaseMs;
    this.#latestMemberships = options.latestMemberships;
  }

  /** Opens (or closes) the users' intervals at `at`, those not open (or open) already. */
  async change(
    tenant: string,
    groupId: string,
    kind: "open" | "close",
    userIds: readonly string[],
    at: number,
  ): Promise<void> {
    if (userIds.length === 0) return;
    await this.#planned(tenant, groupId, async (ts) => {
      const latest = await this.#latestMemberships(tenant, groupId, userIds);
      const users: [string, number][] = [];
      for (const userId of new Set(userIds)) {
        const interval = latest.get(userId);
        const open = interval !== undefined && interval.leftAt === undefined;
        if (kind === "open" && !open) users.push([userId, at]);
        if (kind === "close" && open) users.push([userId, interval.joinedAt]);
      }
      const changed = users.length;
      if (changed === 0) return undefined;
      const sizes = await this.#plannedSizes(
        tenant,
        groupId,
        at,
        kind === "open" ? changed : -changed,
      );
      return { kind, ts, users, at, sizes };
    });
  }

  /**
   * Erases every interval of the user in the group, and takes the user out of every member
   * count it was in: each group_sizes row from a change inside one of its intervals. A new
   * version of the group, like any change, so that no instance uses what it remembered.
   * Returns how many intervals there were.
   */
  async erase(tenant: string, groupId: string, userId: string): Promise<number> {
    const { session } = this.#context;
    const any = await session.execute(this.#cql.membershipsOfUser, [tenant, groupId, userId], read);
    // Not a member ever (a conversation the user only read in): no lock, no new version.
    if (any.rows.length === 0) return 0;
    let erased = 0;
    await this.#planned(tenant, groupId, async (ts) => {
      const { session, long } = this.#context;
      const intervals = (
        await session.execute(this.#cql.membershipsOfUser, [tenant, groupId, userId], read)
      ).rows.map((row) => ({
        joinedAt: toNumber(row.get("joined_at")),
        leftAt: optionalNumber(row.get("left_at")),
      }));
      erased = intervals.length;
      if (erased === 0) return undefined;
      const from = Math.min(...intervals.map((i) => i.joinedAt));
      const sizes: [number, number][] = [];
      for await (const row of session.rows(this.#cql.sizesFrom, [tenant, groupId, long(from)], {
        ...read,
        fetchSize: 1_000,
      })) {
        const changedAt = toNumber(row.get("changed_at"));
        if (isMemberAt(intervals, changedAt)) {
          sizes.push([changedAt, Number(row.get("members") ?? 0) - 1]);
        }
      }
      const users = intervals.map((i): [string, number] => [userId, i.joinedAt]);
      return { kind: "erase", ts, users, at: from, sizes };
    });
    return erased;
  }

  /**
   * Runs one change under the group's lock: `plan` reads the state and plans the rows at
   * write time `ts` (undefined: nothing to do); the plan is stored, then its rows written.
   */
  async #planned(
    tenant: string,
    groupId: string,
    plan: (ts: number) => Promise<MembershipPlan | undefined>,
  ): Promise<void> {
    const opId = types.Uuid.random();
    try {
      await this.#lockGroup(tenant, groupId, opId);
      const lastTs = (await this.lockOf(tenant, groupId, { serial: true }))?.lastTs ?? 0;
      const ts = Math.max(this.#context.writeClock.nextMicros(), lastTs + 1);
      const planned = await plan(ts);
      if (planned === undefined) {
        await this.#unlockGroup(tenant, groupId, opId, undefined);
        return;
      }
      const inserted = await this.#context.session.execute(
        this.#cql.insertPlan,
        [tenant, groupId, opId, JSON.stringify(planned)],
        write, // a retry finds its own plan
      );
      if (!inserted.wasApplied() && inserted.first().get("aborted") === true) {
        throw new StoreUnavailableError(
          `membership change of group ${groupId} took longer than its lock lease; retry`,
        );
      }
      await this.#applyPlan(tenant, groupId, planned);
      await this.#unlockGroup(tenant, groupId, opId, ts);
    } catch (error) {
      // Complete or fence off the change now rather than block the group for a lease.
      await this.#recoverChange(tenant, groupId, opId).catch(() => undefined);
      throw error;
    }
  }

  /** The group's lock columns; `serial` sees every committed lock transaction. */
  async lockOf(
    tenant: string,
    groupId: string,
    options: { readonly serial: boolean },
  ): Promise<GroupLock | undefined> {
    const result = await this.#context.session.execute(this.#cql.groupLock, [tenant, groupId], {
      ...read,
      ...(options.serial ? { serialRead: true } : {}),
    });
    return groupLockOf(result.first());
  }

  /**
   * Completes or fences off the change holding `lock` when it is older than the lease.
   * Returns whether it did (the group's rows may have changed).
   */
  async recoverIfStale(tenant: string, groupId: string, lock: GroupLock | undefined) {
    if (lock?.op === undefined || !this.#isStale(lock.since)) return false;
    await this.#recoverChange(tenant, groupId, lock.op);
    return true;
  }

  async #lockGroup(tenant: string, groupId: string, opId: types.Uuid): Promise<void> {
    const { session, long, clock } = this.#context;
    const deadline = clock() + this.#leaseMs + 5_000;
    for (let attempt = 0; ; attempt++) {
      const result = await session.execute(
        this.#cql.lockGroup,
        [opId, long(clock()), tenant, groupId],
        write, // a retry finds its own op id
      );
      if (result.wasApplied()) return;
      const holder = result.first().get("lock_op") as types.Uuid | null;
      if (holder !== null && String(holder) === String(opId)) return;
      if (holder !== null) {
        const lock = await this.lockOf(tenant, groupId, { serial: true });
        const stillHeld = lock?.op !== undefined && String(lock.op) === String(holder);
        if (stillHeld && this.#isStale(lock.since)) {
          await this.#recoverChange(tenant, groupId, holder);
          continue;
        }
      }
      if (clock() > deadline) {
        throw new StoreUnavailableError(`group ${groupId} is locked by another membership change`);
      }
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(10 * 2 ** attempt, 250) * (0.5 + Math.random())),
      );
    }
  }

  async #unlockGroup(
    tenant: string,
    groupId: string,
    opId: types.Uuid,
    lastTs: number | undefined,
  ): Promise<void> {
    const { session, long } = this.#context;
    // Not applied: someone recovering the change released it, after writing the same rows.
    if (lastTs === undefined) {
      await session.execute(this.#cql.unlockGroup, [tenant, groupId, opId], write);
    } else {
      await session.execute(
        this.#cql.unlockGroupAfterWrite,
        [long(lastTs), tenant, groupId, opId],
        write,
      );
    }
  }

  /** Completes a change from its plan, or fences it off if it has none, then releases its lock. */
  async #recoverChange(tenant: string, groupId: string, opId: types.Uuid): Promise<void> {
    const session = this.#context.session;
    const fenced = await session.execute(this.#cql.fencePlan, [tenant, groupId, opId], write);
    if (fenced.wasApplied() || fenced.first().get("aborted") === true) {
      await this.#unlockGroup(tenant, groupId, opId, undefined);
      return;
    }
    const plan = JSON.parse(fenced.first().get("plan") as string) as MembershipPlan;
    await this.#applyPlan(tenant, groupId, plan);
    await this.#unlockGroup(tenant, groupId, opId, plan.ts);
  }

  /** The group_sizes rows after adding `delta` members at `at`: that row and every later one. */
  async #plannedSizes(
    tenant: string,
    groupId: string,
    at: number,
    delta: number,
  ): Promise<[number, number][]> {
    const { session, long } = this.#context;
    const base = (
      await session.execute(this.#cql.sizeBefore, [tenant, groupId, long(at)], read)
    ).first();
    const sizes = new Map([[at, (base ? Number(base.get("members") ?? 0) : 0) + delta]]);
    for await (const row of session.rows(this.#cql.sizesFrom, [tenant, groupId, long(at)], {
      ...read,
      fetchSize: 1_000,
    })) {
      sizes.set(toNumber(row.get("changed_at")), Number(row.get("members") ?? 0) + delta);
    }
    return [...sizes];
  }

  async #applyPlan(tenant: string, groupId: string, plan: MembershipPlan): Promise<void> {
    const { session, long } = this.#context;
    const rows = plan.users.map(([userId, joinedAt]) => {
      const key = [tenant, groupId, userId, long(joinedAt)];
      if (plan.kind === "open") return { cql: this.#cql.openMembership, params: key };
      if (plan.kind === "erase") return { cql: this.#cql.eraseMembership, params: key };
      return { cql: this.#cql.closeMembership, params: [long(plan.at), ...key] };
    });
    const sizes = plan.sizes.map(([changedAt, members]) => ({
      cql: this.#cql.putSize,
      params: [tenant, groupId, long(changedAt), members],
    }));
    const batches = [...chunk(rows, membershipBatch), ...chunk(sizes, membershipBatch)];
    await mapConcurrently(batches, planBatchesInFlight, (statements) =>
      session.batch(statements, { ...write, timestamp: plan.ts, logged: false }),
    );
  }

  #isStale(since: number | undefined): boolean {
    return since === undefined || this.#context.clock() - since > this.#leaseMs;
  }
}

type LatestMemberships = (
  tenant: string,
  groupId: string,
  userIds: readonly string[],
) => Promise<Map<string, MembershipInterval>>;

function statements(keyspace: string) {
  const t = (table: string) => `${keyspace}.${table}`;
  return {
    // Re-opening an empty interval [t, t) when a user leaves and rejoins within one millisecond.
    // left_at is left unset, not written as null: a null is a tombstone per open interval,
    // which every page of a large group's members would read past.
    openMembership: `INSERT INTO ${t("memberships")} (tenant, group_id, user_id, joined_at)
      VALUES (?, ?, ?, ?)`,
    closeMembership: `UPDATE ${t("memberships")} SET left_at = ?
      WHERE tenant = ? AND group_id = ? AND user_id = ? AND joined_at = ?`,
    eraseMembership: `DELETE FROM ${t("memberships")}
      WHERE tenant = ? AND group_id = ? AND user_id = ? AND joined_at = ?`,
    membershipsOfUser: `SELECT joined_at, left_at FROM ${t("memberships")}
      WHERE tenant = ? AND group_id = ? AND user_id = ?`,
    sizeBefore: `SELECT members FROM ${t("group_sizes")}
      WHERE tenant = ? AND group_id = ? AND changed_at < ? LIMIT 1`,
    sizesFrom: `SELECT changed_at, members FROM ${t("group_sizes")}
      WHERE tenant = ? AND group_id = ? AND changed_at >= ?`,
    putSize: `INSERT INTO ${t("group_sizes")} (tenant, group_id, changed_at, members) VALUES (?, ?, ?, ?)`,
    groupLock: `SELECT lock_op, lock_since, last_ts FROM ${t("group_sizes")}
      WHERE tenant = ? AND group_id = ? LIMIT 1`,
    lockGroup: `UPDATE ${t("group_sizes")} SET lock_op = ?, lock_since = ?
      WHERE tenant = ? AND group_id = ? IF lock_op = null`,
    unlockGroup: `UPDATE ${t("group_sizes")} SET lock_op = null, lock_since = null
      WHERE tenant = ? AND group_id = ? IF lock_op = ?`,
    unlockGroupAfterWrite: `UPDATE ${t("group_sizes")} SET lock_op = null, lock_since = null, last_ts = ?
      WHERE tenant = ? AND group_id = ? IF lock_op = ?`,
    insertPlan: `INSERT INTO ${t("membership_changes")} (tenant, group_id, op_id, aborted, plan)
      VALUES (?, ?, ?, false, ?) IF NOT EXISTS`,
    fencePlan: `INSERT INTO ${t("membership_changes")} (tenant, group_id, op_id, aborted)
      VALUES (?, ?, ?, true) IF NOT EXISTS`,
  };
}
