import type { PrivacyStore } from "../store/receipt-store.js";
import type { Chunk, Cursor, ErasureRecord, UserDataStore } from "../store/user-data-store.js";

/** What an erasure removes through: the user's data by user, and its privacy settings. */
export type ErasableStore = UserDataStore & Pick<PrivacyStore, "eraseUserPrivacy">;

import { type Caller, requireService } from "./caller.js";
import { requireId } from "./validate.js";

/** One concern of an erasure: removes a bounded chunk of one kind of the user's rows per call. */
export interface ErasureStep {
  /** The name its count has in the answer (EraseUserResponse.removed) and in the record. */
  readonly name: string;
  readonly eraseChunk: (
    tenant: string,
    userId: string,
    cursor: Cursor,
    limit: number,
  ) => Promise<Chunk>;
}

/**
 * The steps of an erasure, in order; a new concern is one more line. The order keeps counts
 * exact while the erasure runs, not only once it is done:
 * - horizons first: a message tracked late under a horizon would otherwise get a new receipt;
 * - receipts before memberships: while the user is still a member of a message's audience and
 *   no longer a reader, it is counted unread, so read + unread stays the audience;
 * - its private reads and settings with them (never counted for others: no count moves);
 * - messages next (their sender id, which is not a count), and the backend's lookups by user
 *   last, since every step before finds the user's rows through them.
 */
export function erasureSteps(store: ErasableStore): readonly ErasureStep[] {
  return [
    { name: "horizons", eraseChunk: (...a) => store.eraseHorizonsOf(...a) },
    { name: "horizon_set_times", eraseChunk: (...a) => store.eraseHorizonSetTimesOf(...a) },
    { name: "receipts", eraseChunk: (...a) => store.eraseReceiptsOf(...a) },
    { name: "privacy", eraseChunk: (tenant, userId) => erasePrivacy(store, tenant, userId) },
    { name: "memberships", eraseChunk: (...a) => store.eraseMembershipsOf(...a) },
    { name: "messages_pseudonymised", eraseChunk: (...a) => store.pseudonymiseMessagesOf(...a) },
    { name: "index_entries", eraseChunk: (...a) => store.eraseUserIndexOf(...a) },
  ];
}

/**
 * One chunk for all of it: a user has few settings, and its private reads are removed by the
 * store in one pass (not bounded; see the note in docs/operations.md).
 */
async function erasePrivacy(store: ErasableStore, tenant: string, userId: string): Promise<Chunk> {
  const { settings, privateReceipts } = await store.eraseUserPrivacy(tenant, userId);
  return { removed: settings + privateReceipts, cursor: undefined };
}

/** What an EraseUser call answers. */
export interface ErasureProgress {
  /** True once nothing of the user is left; false: call again to go on. */
  readonly done: boolean;
  /** The step the next call goes on with; "" when done. */
  readonly step: string;
  /** Rows removed by each step so far (every step named, 0 included). */
  readonly removed: Readonly<Record<string, number>>;
  readonly startedAt: number;
  readonly finishedAt: number | undefined;
}

export interface UserErasureOptions {
  readonly store: ErasableStore;
  /** Default: erasureSteps(store). */
  readonly steps?: readonly ErasureStep[];
  readonly clock?: () => number;
  /** Rows one chunk removes at most. */
  readonly chunkSize?: number;
  /** A call stops starting chunks after this long and answers done = false. */
  readonly callBudgetMs?: number;
}

/**
 * The right to erasure (EraseUser), in bounded chunks. The progress (step, its cursor, the
 * counts) is saved in the store after every chunk, by compare-and-set, so a call cut short by a
 * crash, a lost answer or a deadline loses at most the count of one chunk, and the next call,
 * on any instance, goes on from there. Every chunk is idempotent. Calling again once done runs
 * a new pass, which finds nothing unless something arrived since (then it erases it too).
 */
export class UserErasure {
  readonly #store: ErasableStore;
  readonly #steps: readonly ErasureStep[];
  readonly #clock: () => number;
  readonly #chunkSize: number;
  readonly #callBudgetMs: number;

  constructor(options: UserErasureOptions) {
    this.#store = options.store;
    this.#steps = options.steps ?? erasureSteps(options.store);
    this.#clock = options.clock ?? Date.now;
    this.#chunkSize = options.chunkSize ?? 1_000;
    this.#callBudgetMs = options.callBudgetMs ?? 2_000;
  }

  /** Goes on until done, out of budget, or `signal` aborts (the caller gave up), between chunks. */
  async eraseUser(
    tenant: string,
    caller: Caller,
    request: { userId: string },
    signal?: AbortSignal,
  ): Promise<ErasureProgress> {
    requireService(caller, "EraseUser");
    const userId = requireId("user_id", request.userId);
    const deadline = this.#clock() + this.#callBudgetMs;
    let record = await this.#begin(tenant, userId);
    for (let chunks = 0; record.state === "erasing"; chunks++) {
      if (chunks > 0 && (this.#clock() >= deadline || signal?.aborted)) break;
      const next = await this.#nextChunk(tenant, userId, record);
      if (await this.#store.saveErasure(tenant, userId, next, record.version)) record = next;
      // Another call recorded a chunk first: go on from its record, this chunk's rows were its.
      else
        record =
          (await this.#store.erasureOf(tenant, userId)) ?? (await this.#begin(tenant, userId));
    }
    return this.#progressOf(record);
  }

  /** The record under way, or a new pass when there is none or the last one is done. */
  async #begin(tenant: string, userId: string): Promise<ErasureRecord> {
    for (;;) {
      const stored = await this.#store.erasureOf(tenant, userId);
      if (stored?.state === "erasing") return stored;
      const fresh: ErasureRecord = {
        state: "erasing",
        startedAt: this.#clock(),
        step: (this.#steps[0] as ErasureStep).name,
        cursor: undefined,
        removed: stored?.removed ?? {},
        version: (stored?.version ?? 0) + 1,
      };
      if (await this.#store.saveErasure(tenant, userId, fresh, stored?.version)) return fresh;
    }
  }

  async #nextChunk(tenant: string, userId: string, record: ErasureRecord): Promise<ErasureRecord> {
    // A step no longer in the list (renamed in a later version): start the pass over.
    const known = this.#steps.findIndex((s) => s.name === record.step);
    const index = Math.max(0, known);
    const step = this.#steps[index] as ErasureStep;
    const cursor = known < 0 ? undefined : record.cursor;
    const chunk = await step.eraseChunk(tenant, userId, cursor, this.#chunkSize);
    const removed = {
      ...record.removed,
      [step.name]: (record.removed[step.name] ?? 0) + chunk.removed,
    };
    const version = record.version + 1;
    if (chunk.cursor !== undefined) return { ...record, cursor: chunk.cursor, removed, version };
    const following = this.#steps[index + 1];
    if (following !== undefined) {
      return { ...record, step: following.name, cursor: undefined, removed, version };
    }
    return {
      ...record,
      state: "done",
      step: "",
      cursor: undefined,
      removed,
      version,
      finishedAt: this.#clock(),
    };
  }

  #progressOf(record: ErasureRecord): ErasureProgress {
    const removed: Record<string, number> = {};
    for (const { name } of this.#steps) removed[name] = record.removed[name] ?? 0;
    return {
      done: record.state === "done",
      step: record.state === "done" ? "" : record.step,
      removed,
      startedAt: record.startedAt,
      finishedAt: record.finishedAt,
    };
  }
}
