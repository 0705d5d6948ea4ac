import { type Client, types } from "cassandra-driver";
import { LRUCache } from "lru-cache";
import { StoreUnavailableError } from "../../domain/errors.js";
import {
  type ConversationType,
  type Member,
  type PendingChange,
  pendingReceipt,
  type ReadMember,
  type TrackedMessage,
} from "../../domain/model.js";
import type {
  Conversation,
  FirstPageRequest,
  MembershipAt,
  MembershipInterval,
  MembershipProbe,
  MessageCursor,
  NewReceipt,
  ReceiptStore,
  RecordedReceipt,
} from "../receipt-store.js";
import { TurnSharedReads } from "../turn-shared-reads.js";
import { CassandraOutbox } from "./cassandra-outbox.js";
import {
  type Consistency,
  CqlSession,
  mapConcurrently,
  type Params,
  type SerialConsistency,
  type StatementOptions,
} from "./cql-session.js";
import { MembershipMemory } from "./membership-memory.js";
import { PartitionWriteCoalescer } from "./partition-write-coalescer.js";
import type { ReadCountCache, ReaderSource } from "./read-count-cache.js";
import { SerialPerKey } from "./serial-per-key.js";

export interface CassandraReceiptStoreOptions {
  /** Keyspace holding the schema (applied beforehand by applyCassandraSchema). */
  readonly keyspace: string;
  /** Of every read and write; exact counts need reads and writes that overlap (QUORUM-like). */
  readonly consistency?: Consistency;
  /** Of lightweight transactions. */
  readonly serialConsistency?: SerialConsistency;
  /** Hot read counts; without one every count is read from Cassandra. */
  readonly cache?: ReadCountCache;
  /** A membership change lock older than this is taken to belong to a crashed process. */
  readonly membershipLockLeaseMs?: number;
  /** Queries one store call keeps in flight. */
  readonly concurrency?: number;
  /**
   * Tracked messages this process keeps in memory (they never change once
   * tracked), as many conversations (their first write wins, so they never
   * change either) and as many membership facts. 0 reads everything from
   * Cassandra every time.
   */
  readonly localCacheEntries?: number;
  readonly clock?: () => number;
  /** Called by close(): releases what the store was opened with, when it owns it. */
  readonly release?: () => Promise<void>;
}

/** Tracked messages of a conversation are partitioned by 30-day bucket of sent_at. */
const bucketMs = 30 * 24 * 3_600_000;
const bucketOf = (sentAt: number): number => Math.floor(sentAt / bucketMs);

/** Default of `localCacheEntries`: about 40 MB of messages and 15 MB of membership facts. */
const defaultLocalCacheEntries = 50_000;

/** Memberships written per single-partition batch. */
const membershipBatch = 100;
/** Users per `user_id IN ?` read. */
const inListSize = 100;
/**
 * Receipt records per read and per single-partition batch: SendReceipts
 * takes at most 100 ids, so one call is one read and one batch.
 */
const receiptBatch = 100;
/** Readers rows of one message sent as one batch at most. */
const readerRowBatch = 100;
/**
 * Candidates checked against the readers partition at once when listing
 * unread members: a page's worth first (most members of a large group have
 * not read a message), twice as many each time a step comes up short.
 */
const maxUnreadBatch = 2_000;

const write: StatementOptions = { idempotent: true };
const read: StatementOptions = { idempotent: true };

/** What a receipt's record holds; a record written by schema version 1 has no read time. */
interface ReceiptRecord {
  readonly readAt: number | undefined;
  readonly writeTs: number;
}

interface NewRecord {
  readonly message: TrackedMessage;
  readonly readAt: number;
  readonly writeTs: number;
}

interface MembershipPlan {
  readonly kind: "open" | "close";
  /** Write time (µs) of every row of the change. */
  readonly ts: number;
  /** [user, joined_at]: of the new interval (open), of the interval it closes (close). */
  readonly users: readonly (readonly [string, number])[];
  readonly at: number;
  /** [changed_at, members]: the group_sizes rows the change writes, absolute values. */
  readonly sizes: readonly (readonly [number, number])[];
}

/**
 * The production store: Apache Cassandra for the truth, with an optional
 * read-count cache (Redis) in front of the readers partitions. The data model
 * is in docs/data-model.md and src/store/cassandra/schema/.
 *
 * Exactness of read counts: the readers partition of a message holds one row
 * per reader, written by idempotent INSERTs at a fixed write time, so retries
 * (the driver's or the client's) never add a row twice and the number of rows
 * is the count. Whether a receipt is the reader's first is told by its
 * record in receipts_by_reader (see insertReceipts). Counter columns and
 * lightweight transactions are not used for receipts.
 *
 * The Client (one per process) and the cache are the caller's, closed by
 * `release` if the caller hands them over; the Client may use either bigint
 * encoding of the driver.
 */
export class CassandraReceiptStore implements ReceiptStore {
  readonly #session: CqlSession;
  readonly #cache: ReadCountCache | undefined;
  readonly #cql: ReturnType<typeof statements>;
  readonly #leaseMs: number;
  readonly #concurrency: number;
  readonly #clock: () => number;
  readonly #bigint: boolean;
  readonly #release: (() => Promise<void>) | undefined;
  readonly #messages: LRUCache<string, TrackedMessage> | undefined;
  readonly #conversations: LRUCache<string, Conversation> | undefined;
  /** Group-version reads of this event-loop turn, by tenant and group id. */
  readonly #versionReads = new TurnSharedReads<number | undefined>();
  /** Message reads in flight, by tenant and message id. */
  readonly #messageReads = new Map<string, Promise<TrackedMessage | undefined>>();
  readonly #memberships: MembershipMemory | undefined;
  readonly #readerCalls = new SerialPerKey();
  readonly #readerRows: PartitionWriteCoalescer;
  readonly #outbox: CassandraOutbox;
  #lastMicros = 0;

  constructor(client: Client, options: CassandraReceiptStoreOptions) {
    this.#session = new CqlSession(client, {
      consistency: options.consistency ?? "LOCAL_QUORUM",
      serialConsistency: options.serialConsistency ?? "LOCAL_SERIAL",
    });
    this.#cache = options.cache;
    this.#cql = statements(options.keyspace);
    this.#outbox = new CassandraOutbox(this.#session, options.keyspace);
    this.#leaseMs = options.membershipLockLeaseMs ?? 30_000;
    this.#concurrency = options.concurrency ?? 32;
    this.#clock = options.clock ?? Date.now;
    this.#release = options.release;
    const entries = options.localCacheEntries ?? defaultLocalCacheEntries;
    if (entries > 0) {
      this.#messages = new LRUCache({ max: entries });
      this.#conversations = new LRUCache({ max: entries });
      this.#memberships = new MembershipMemory(entries);
    }
    const encoding = (
      client as unknown as { options?: { encoding?: { useBigIntAsLong?: boolean } } }
    ).options?.encoding;
    this.#bigint = encoding?.useBigIntAsLong === true;
    this.#readerRows = new PartitionWriteCoalescer(
      async (rows) => {
        const [only] = rows;
        // A row alone goes out as a plain statement: a batch of one costs more.
        if (rows.length === 1 && only !== undefined) await this.#run(only.cql, only.params, write);
        else await this.#batch(rows, { ...write, logged: false });
      },
      { maxBatch: readerRowBatch },
    );
  }

  // --- conversations and messages ---

  async getConversation(tenant: string, conversationId: string): Promise<Conversation | undefined> {
    const key = `${tenant}\u0000${conversationId}`;
    const known = this.#conversations?.get(key);
    if (known !== undefined) return known;
    const row = (
      await this.#run(this.#cql.getConversation, [tenant, conversationId], read)
    ).first();
    // Not remembered when missing: the conversation may be created by the next call.
    if (row === null || row === undefined) return undefined;
    const conversation = conversationFromRow(conversationId, row);
    this.#conversations?.set(key, conversation);
    return conversation;
  }

  async getMessages(
    tenant: string,
    messageIds: readonly string[],
  ): Promise<Map<string, TrackedMessage>> {
    const found = new Map<string, TrackedMessage>();
    const unknown: string[] = [];
    for (const messageId of new Set(messageIds)) {
      // A tracked message never changes (re-tracking with other data is refused), so what
      // this process once read stays true.
      const known = this.#messages?.get(`${tenant}\u0000${messageId}`);
      if (known === undefined) unknown.push(messageId);
      else found.set(messageId, known);
    }
    await mapConcurrently(unknown, this.#concurrency, async (messageId) => {
      const key = `${tenant}\u0000${messageId}`;
      const pending = this.#messageReads.get(key);
      // A read sent before this call began may have missed a message tracked since: only a
      // shared answer that found the message is taken as is.
      const message =
        (pending && (await pending)) ?? (await this.#readMessage(key, tenant, messageId));
      if (message !== undefined) found.set(messageId, message);
    });
    return found;
  }

  /** One read of a message, shared with the calls that want it meanwhile. */
  async #readMessage(
    key: string,
    tenant: string,
    messageId: string,
  ): Promise<TrackedMessage | undefined> {
    const reading = (async () => {
      const row = (await this.#run(this.#cql.getMessage, [tenant, messageId], read)).first();
      if (!row) return undefined;
      const message = this.#toMessage(row);
      this.#messages?.set(key, message);
      return message;
    })();
    this.#messageReads.set(key, reading);
    try {
      return await reading;
    } finally {
      if (this.#messageReads.get(key) === reading) this.#messageReads.delete(key);
    }
  }

  async insertMessages(tenant: string, messages: readonly TrackedMessage[]): Promise<Set<string>> {
    const conversations = new Map(messages.map((m) => [m.conversationId, m]));
    await mapConcurrently([...conversations.values()], this.#concurrency, async (message) => {
      if ((await this.getConversation(tenant, message.conversationId)) !== undefined) return;
      const c2c = message.conversationType === "c2c";
      // The domain checked that a C2C message names its receiver.
      const pair = c2c ? [message.senderId, message.receiverId ?? ""].sort() : [];
      const { conversationId, conversationType } = message;
      // First writer wins (IF NOT EXISTS), as with INSERT OR IGNORE; the domain checked the
      // data beforehand. Either way the answer says what is stored for good.
      const result = await this.#run(
        this.#cql.insertConversation,
        [tenant, conversationId, conversationType, pair[0] ?? "", pair[1] ?? ""],
        write,
      );
      this.#conversations?.set(
        `${tenant}\u0000${conversationId}`,
        result.wasApplied()
          ? { conversationId, type: conversationType, participants: pair }
          : conversationFromRow(conversationId, result.first()),
      );
    });

    const existing = new Set<string>();
    await mapConcurrently(messages, this.#concurrency, async (message) => {
      const trackId = types.Uuid.random();
      const result = await this.#run(
        this.#cql.insertMessage,
        [
          tenant,
          message.messageId,
          message.conversationId,
          message.conversationType,
          message.senderId,
          this.#long(message.sentAt),
          message.receiverId,
          trackId,
        ],
        write, // a retry finds its own track_id
      );
      let stored = message;
      if (!result.wasApplied()) {
        const row = result.first();
        if (String(row.get("track_id")) !== String(trackId)) {
          existing.add(message.messageId);
          stored = this.#toMessage(row);
        }
      }
      // Always (re)written from the stored message: finishes a tracking cut short.
      const bucket = bucketOf(stored.sentAt);
      await Promise.all([
        this.#run(
          this.#cql.insertBucket,
          [tenant, stored.conversationId, this.#long(bucket)],
          write,
        ),
        this.#run(
          this.#cql.insertMessageByConversation,
          [
            tenant,
            stored.conversationId,
            this.#long(bucket),
            this.#long(stored.sentAt),
            stored.messageId,
            stored.conversationType,
            stored.senderId,
            stored.receiverId,
          ],
          write,
        ),
      ]);
      this.#messages?.set(`${tenant}\u0000${stored.messageId}`, stored);
    });
    return existing;
  }

  async listMessagesSentBetween(
    tenant: string,
    conversationId: string,
    range: { readonly after: number | undefined; readonly upTo: number },
    cursor: MessageCursor | undefined,
    limit: number,
  ): Promise<TrackedMessage[]> {
    const from = cursor?.sentAt ?? range.after ?? 0;
    if (from > range.upTo || limit <= 0) return [];
    const buckets = await this.#run(
      this.#cql.bucketsBetween,
      [tenant, conversationId, this.#long(bucketOf(from)), this.#long(bucketOf(range.upTo))],
      read,
    );
    const found: TrackedMessage[] = [];
    for (const bucketRow of buckets.rows) {
      const bucket = bucketRow.get("bucket");
      const remaining = limit - found.length;
      const upTo = this.#long(range.upTo);
      const result =
        cursor !== undefined
          ? await this.#run(
              this.#cql.messagesAfterCursor,
              [
                tenant,
                conversationId,
                bucket,
                this.#long(cursor.sentAt),
                cursor.messageId,
                upTo,
                remaining,
              ],
              read,
            )
          : range.after !== undefined
            ? await this.#run(
                this.#cql.messagesBetween,
                [tenant, conversationId, bucket, this.#long(range.after), upTo, remaining],
                read,
              )
            : await this.#run(
                this.#cql.messagesUpTo,
                [tenant, conversationId, bucket, upTo, remaining],
                read,
              );
      for (const row of result.rows) {
        found.push({
          conversationId,
          conversationType: row.get("conversation_type") as ConversationType,
          messageId: row.get("message_id") as string,
          senderId: row.get("sender_id") as string,
          sentAt: toNumber(row.get("sent_at")),
          receiverId: row.get("receiver_id") as string,
        });
      }
      if (found.length >= limit) break;
    }
    return found;
  }

  // --- receipts ---

  /**
   * No lightweight transaction: `receipts_by_reader` (one partition per reader
   * and conversation) is the record of each receipt. One read tells which of
   * the call's messages the reader has a record for; the records of the new
   * receipts go in as one single-partition batch; then each receipt's readers
   * row, the one that counts, is written from its record, coalesced with the
   * other readers' rows of the same message. Rows carry the record's write
   * time, so rewriting one (a retry, a duplicate) changes nothing and never
   * outlives a deletion. A call that fails part way leaves records whose
   * readers rows may be missing; a retry writes them from the records and
   * counts each once, though as not new.
   *
   * The calls of one reader run one at a time in this process, so of two
   * concurrent sends of one receipt here exactly one is new. Across instances
   * both may report new (the count stays exact: one row per reader).
   */
  insertReceipts(
    tenant: string,
    readerId: string,
    receipts: readonly NewReceipt[],
  ): Promise<RecordedReceipt[]> {
    return this.#readerCalls.run(`${tenant}\u0000${readerId}`, () =>
      this.#insertReceipts(tenant, readerId, receipts),
    );
  }

  async readCounts(
    tenant: string,
    messages: readonly TrackedMessage[],
  ): Promise<Map<string, number>> {
    const ids = [...new Set(messages.map((m) => m.messageId))];
    const counts =
      this.#cache === undefined
        ? new Map<string, number>()
        : await this.#cache.readCounts(tenant, ids, (id) => this.#readerSource(tenant, id));
    const cold = ids.filter((id) => !counts.has(id));
    await mapConcurrently(cold, this.#concurrency, async (id) => {
      counts.set(id, await this.#countReaders(tenant, id));
    });
    return counts;
  }

  async listReaders(
    tenant: string,
    message: TrackedMessage,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<ReadMember[]> {
    const result = await this.#run(
      this.#cql.readersAfter,
      [tenant, message.messageId, afterUserId ?? "", limit],
      read,
    );
    return result.rows.map((row) => ({
      userId: row.get("reader_id") as string,
      readAt: toNumber(row.get("read_at")),
    }));
  }

  async receiverReadTimes(
    tenant: string,
    messages: readonly TrackedMessage[],
  ): Promise<Map<string, number>> {
    const times = new Map<string, number>();
    await mapConcurrently(messages, this.#concurrency, async ({ messageId, receiverId }) => {
      const row = (
        await this.#run(this.#cql.getReaderReadAt, [tenant, messageId, receiverId], read)
      ).first();
      if (row) times.set(messageId, toNumber(row.get("read_at")));
    });
    return times;
  }

  listFirstPages(
    tenant: string,
    pages: readonly FirstPageRequest[],
    limit: number,
  ): Promise<ReadMember[][]> {
    return mapConcurrently(pages, this.#concurrency, async ({ message, filter }) =>
      filter === "read"
        ? this.listReaders(tenant, message, undefined, limit)
        : (await this.listUnreadMembers(tenant, message, undefined, limit)).map((userId) => ({
            userId,
          })),
    );
  }

  async hasRead(
    tenant: string,
    readerId: string,
    messageIds: readonly string[],
  ): Promise<Set<string>> {
    const found = new Set<string>();
    await mapConcurrently([...new Set(messageIds)], this.#concurrency, async (messageId) => {
      const row = (
        await this.#run(this.#cql.getReader, [tenant, messageId, readerId], read)
      ).first();
      if (row) found.add(messageId);
    });
    return found;
  }

  async deleteReceiptsFrom(
    tenant: string,
    groupId: string,
    userId: string,
    fromSentAt: number,
  ): Promise<string[]> {
    const doomed = (
      await this.#run(
        this.#cql.receiptsOfReaderFrom,
        [tenant, groupId, userId, this.#long(fromSentAt)],
        read,
      )
    ).rows;
    await mapConcurrently(doomed, this.#concurrency, async (row) => {
      const messageId = row.get("message_id") as string;
      // Later than the receipt's own write time, so that no rewrite of it survives.
      const ts = Math.max(this.#nextMicros(), toNumber(row.get("write_ts")) + 1);
      await this.#run(this.#cql.deleteReader, [tenant, messageId, userId], {
        ...write,
        timestamp: ts,
      });
      await this.#cache?.readersDeleted(tenant, [messageId]);
      // The record goes last: a retry after a failure finds the rest again.
      await this.#run(
        this.#cql.deleteReceiptByReader,
        [tenant, groupId, userId, row.get("sent_at"), messageId],
        { ...write, timestamp: ts },
      );
    });
    return doomed.map((row) => row.get("message_id") as string);
  }

  // --- read horizons ---

  async getHorizon(
    tenant: string,
    conversationId: string,
    readerId: string,
  ): Promise<number | undefined> {
    const row = (
      await this.#run(this.#cql.getHorizon, [tenant, conversationId, readerId], read)
    ).first();
    return row ? toNumber(row.get("read_up_to")) : undefined;
  }

  async advanceHorizon(
    tenant: string,
    conversationId: string,
    readerId: string,
    upTo: number,
    at: number,
  ): Promise<{ readonly previous: number | undefined; readonly current: number }> {
    const previous = await this.getHorizon(tenant, conversationId, readerId);
    let expected = previous;
    let kept = false;
    for (;;) {
      if (expected !== undefined && expected >= upTo) return { previous, current: expected };
      if (!kept) {
        // Before the horizon moves: a move acknowledged to the caller is always announced.
        await this.#outbox.keep([
          { kind: "horizon", tenant, conversationId, readerId, readUpTo: upTo, at },
        ]);
        kept = true;
      }
      // The index entry first: the index may hold stale entries, never miss one.
      await this.#run(
        this.#cql.insertHorizonIndex,
        [tenant, conversationId, this.#long(upTo), readerId],
        write,
      );
      const result =
        expected === undefined
          ? await this.#run(
              this.#cql.insertHorizon,
              [tenant, conversationId, readerId, this.#long(upTo)],
              write,
            )
          : await this.#run(
              this.#cql.moveHorizon,
              [this.#long(upTo), tenant, conversationId, readerId, this.#long(expected)],
              write,
            );
      const now = result.wasApplied() ? upTo : toNumber(result.first().get("read_up_to"));
      // Not applied but already at upTo: our own retried write, or an equal move.
      if (now === upTo) {
        if (expected !== undefined)
          await this.#dropHorizonIndex(tenant, conversationId, readerId, expected);
        return { previous, current: upTo };
      }
      expected = now;
    }
  }

  async horizonsFrom(
    tenant: string,
    conversationId: string,
    at: number,
  ): Promise<{ readonly readerId: string; readonly readUpTo: number }[]> {
    const candidates = new Set<string>();
    for await (const row of this.#session.rows(
      this.#cql.horizonIndexFrom,
      [tenant, conversationId, this.#long(at)],
      { ...read, fetchSize: 1_000 },
    )) {
      candidates.add(row.get("reader_id") as string);
    }
    const horizons = await mapConcurrently(
      [...candidates],
      this.#concurrency,
      async (readerId) => ({
        readerId,
        readUpTo: await this.getHorizon(tenant, conversationId, readerId),
      }),
    );
    return horizons.flatMap((h) =>
      h.readUpTo !== undefined && h.readUpTo >= at
        ? [{ readerId: h.readerId, readUpTo: h.readUpTo }]
        : [],
    );
  }

  async noteHorizonSet(
    tenant: string,
    conversationId: string,
    readerId: string,
    readUpTo: number,
    setAt: number,
  ): Promise<void> {
    await this.#run(
      this.#cql.insertHorizonSet,
      [tenant, conversationId, readerId, this.#long(readUpTo), this.#long(setAt)],
      write,
    );
  }

  horizonSetTimes(
    tenant: string,
    conversationId: string,
    readerId: string,
    times: readonly number[],
  ): Promise<(number | undefined)[]> {
    return mapConcurrently(times, this.#concurrency, async (at) => {
      const row = (
        await this.#run(
          this.#cql.horizonSetAt,
          [tenant, conversationId, readerId, this.#long(at)],
          read,
        )
      ).first();
      return row ? toNumber(row.get("set_at")) : undefined;
    });
  }

  // --- membership history ---

  async latestMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
  ): Promise<Map<string, MembershipInterval>> {
    const latest = new Map<string, MembershipInterval>();
    const unique = [...new Set(userIds)];
    const lists = Array.from({ length: Math.ceil(unique.length / inListSize) }, (_, i) =>
      unique.slice(i * inListSize, (i + 1) * inListSize),
    );
    await mapConcurrently(lists, this.#concurrency, async (list) => {
      const result = await this.#run(this.#cql.membershipsOfUsers, [tenant, groupId, list], read);
      // Rows come by user, latest interval first.
      for (const row of result.rows) {
        const userId = row.get("user_id") as string;
        if (latest.has(userId)) continue;
        latest.set(userId, {
          joinedAt: toNumber(row.get("joined_at")),
          leftAt: optionalNumber(row.get("left_at")),
        });
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
    await this.#changeMemberships(tenant, groupId, "open", userIds, joinedAt);
  }

  async closeMemberships(
    tenant: string,
    groupId: string,
    userIds: readonly string[],
    leftAt: number,
  ): Promise<void> {
    await this.#changeMemberships(tenant, groupId, "close", userIds, leftAt);
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
      const row = (
        await this.#run(this.#cql.sizeAt, [tenant, groupId, this.#long(at)], read)
      ).first();
      const lock = row
        ? row
        : (await this.#run(this.#cql.groupLock, [tenant, groupId], read)).first();
      const lockOp = lock?.get("lock_op") as types.Uuid | null | undefined;
      if (attempt === 0 && lockOp && this.#isStale(lock?.get("lock_since"))) {
        await this.#recoverChange(tenant, groupId, lockOp);
        continue;
      }
      return row ? Number(row.get("members") ?? 0) : 0;
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
    const memory = this.#memberships;
    const version = await this.#versionOf(tenant, groupId);
    if (memory === undefined || version === undefined) {
      return mapConcurrently(probes, this.#concurrency, async ({ userId, at }) => ({
        memberCount: await this.memberCountAt(tenant, groupId, at),
        wasMember: (await this.wasMemberAt(tenant, groupId, userId, [at]))[0] === true,
      }));
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
      mapConcurrently(times, this.#concurrency, async (at) => {
        const row = (
          await this.#run(this.#cql.sizeAt, [tenant, groupId, this.#long(at)], read)
        ).first();
        const members = row ? Number(row.get("members") ?? 0) : 0;
        counts.set(at, members);
        memory.rememberCount(tenant, groupId, version, at, members);
      }),
      mapConcurrently(users, this.#concurrency, async (userId) => {
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

  async listUnreadMembers(
    tenant: string,
    message: TrackedMessage,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<string[]> {
    const at = message.sentAt;
    const unread: string[] = [];
    let batch: string[] = [];
    let batchSize = limit + 16;
    let checkedThrough = afterUserId ?? "";
    // Members and readers are both ordered by user id: compare them range by range.
    const check = async (): Promise<void> => {
      const last = batch.at(-1);
      if (last === undefined) return;
      const readers = new Set<string>();
      for await (const row of this.#session.rows(
        this.#cql.readerIdsBetween,
        [tenant, message.messageId, checkedThrough, last],
        { ...read, fetchSize: 1_000 },
      )) {
        readers.add(row.get("reader_id") as string);
      }
      for (const userId of batch) {
        if (!readers.has(userId) && unread.length < limit) unread.push(userId);
      }
      checkedThrough = last;
      batch = [];
      batchSize = Math.min(batchSize * 2, maxUnreadBatch);
    };
    const members = this.#membersAt(tenant, message.conversationId, at, afterUserId, batchSize);
    for await (const userId of members) {
      if (userId === message.senderId) continue;
      batch.push(userId);
      if (batch.length >= batchSize) {
        await check();
        if (unread.length >= limit) return unread;
      }
    }
    await check();
    return unread;
  }

  async listCurrentMembers(
    tenant: string,
    groupId: string,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<Member[]> {
    const members: Member[] = [];
    let previous: string | undefined;
    for await (const row of this.#session.rows(
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

  // --- outbox ---

  pendingChanges(before: number, limit: number): Promise<PendingChange[]> {
    return this.#outbox.pending(before, limit);
  }

  clearPendingChanges(changes: readonly PendingChange[]): Promise<void> {
    return this.#outbox.clear(changes);
  }

  async ping(): Promise<void> {
    await this.#run("SELECT release_version FROM system.local", [], read);
  }

  async close(): Promise<void> {
    await this.#release?.();
  }

  // --- receipts: internals ---

  async #insertReceipts(
    tenant: string,
    readerId: string,
    receipts: readonly NewReceipt[],
  ): Promise<RecordedReceipt[]> {
    const records = await this.#receiptRecords(
      tenant,
      readerId,
      receipts.map((r) => r.message),
    );
    const writeTs = this.#nextMicros();
    const byMessage = new Map<string, ReceiptRecord & { readonly message: TrackedMessage }>();
    const fresh: NewRecord[] = [];
    for (const { message, readAt } of receipts) {
      if (byMessage.has(message.messageId)) continue;
      const known = records.get(message.messageId);
      if (known === undefined) fresh.push({ message, readAt, writeTs });
      byMessage.set(message.messageId, { message, ...(known ?? { readAt, writeTs }) });
    }
    // Before the receipts: a receipt acknowledged to the caller is always announced.
    await this.#outbox.keep(
      fresh.map(({ message, readAt }) => pendingReceipt(tenant, readerId, message, readAt)),
    );
    await mapConcurrently(this.#recordBatches(tenant, readerId, fresh), 4, (batch) =>
      this.#batch(batch, { ...write, logged: false }),
    );
    await Promise.all(
      [...byMessage.values()].map(({ message, readAt, writeTs: ts }) =>
        // A record of version 1 has no read time: its readers row went in with it, in one batch.
        readAt === undefined
          ? undefined
          : this.#readerRows.write(`${tenant}\u0000${message.messageId}`, {
              cql: this.#cql.insertReader,
              params: [tenant, message.messageId, readerId, this.#long(readAt), this.#long(ts)],
            }),
      ),
    );
    // Counted only once every receipt of the call is stored.
    const counts = new Map<string, number>();
    await mapConcurrently([...byMessage.keys()], this.#concurrency, async (messageId) => {
      const readers = this.#readerSource(tenant, messageId);
      const cached = await this.#cache?.readerRecorded(tenant, messageId, readerId, readers);
      counts.set(messageId, cached ?? (await this.#countReaders(tenant, messageId)));
    });
    const reported = new Set<string>();
    return receipts.map(({ message: { messageId } }) => {
      const first = !reported.has(messageId) && !records.has(messageId);
      reported.add(messageId);
      return { messageId, inserted: first, readCount: counts.get(messageId) ?? 0 };
    });
  }

  /** The reader's receipt records for these messages, by message id: one read per conversation. */
  async #receiptRecords(
    tenant: string,
    readerId: string,
    messages: readonly TrackedMessage[],
  ): Promise<Map<string, ReceiptRecord>> {
    const records = new Map<string, ReceiptRecord>();
    const byConversation = Map.groupBy(messages, (m) => m.conversationId);
    await mapConcurrently([...byConversation], this.#concurrency, async ([conversationId, of]) => {
      for (const part of chunk(of, receiptBatch)) {
        const keys = part.map((m) => new types.Tuple(this.#long(m.sentAt), m.messageId));
        const result = await this.#run(
          this.#cql.receiptRecords,
          [tenant, conversationId, readerId, keys],
          read,
        );
        for (const row of result.rows) {
          records.set(row.get("message_id") as string, {
            readAt: optionalNumber(row.get("read_at")),
            writeTs: toNumber(row.get("write_ts")),
          });
        }
      }
    });
    return records;
  }

  /** The records of new receipts, one single-partition batch per conversation. */
  #recordBatches(
    tenant: string,
    readerId: string,
    receipts: readonly NewRecord[],
  ): { cql: string; params: Params }[][] {
    const byConversation = Map.groupBy(receipts, (r) => r.message.conversationId);
    return [...byConversation].flatMap(([conversationId, of]) =>
      chunk(
        of.map(({ message, readAt, writeTs }) => ({
          cql: this.#cql.insertReceiptRecord,
          params: [
            tenant,
            conversationId,
            readerId,
            this.#long(message.sentAt),
            message.messageId,
            this.#long(readAt),
            this.#long(writeTs),
            this.#long(writeTs),
          ],
        })),
        receiptBatch,
      ),
    );
  }

  async #countReaders(tenant: string, messageId: string): Promise<number> {
    const row = (await this.#run(this.#cql.countReaders, [tenant, messageId], read)).first();
    return row ? toNumber(row.get("n")) : 0;
  }

  #readerSource(tenant: string, messageId: string): ReaderSource {
    const session = this.#session;
    const cql = this.#cql.readerIds;
    return async function* () {
      let page: string[] = [];
      for await (const row of session.rows(cql, [tenant, messageId], {
        ...read,
        fetchSize: 5_000,
      })) {
        page.push(row.get("reader_id") as string);
        if (page.length >= 5_000) {
          yield page;
          page = [];
        }
      }
      if (page.length > 0) yield page;
    };
  }

  async #dropHorizonIndex(
    tenant: string,
    conversationId: string,
    readerId: string,
    readUpTo: number,
  ): Promise<void> {
    try {
      await this.#run(
        this.#cql.deleteHorizonIndex,
        [tenant, conversationId, this.#long(readUpTo), readerId],
        write,
      );
    } catch {
      // A stale index entry is harmless: horizonsFrom checks each against `horizons`.
    }
  }

  // --- membership: internals ---

  /**
   * Users who were members at `at`, in user id order, after `afterUserId`,
   * read `fetchSize` interval rows at a time.
   */
  async *#membersAt(
    tenant: string,
    groupId: string,
    at: number,
    afterUserId: string | undefined,
    fetchSize: number,
  ): AsyncGenerator<string> {
    let current: string | undefined;
    let member = false;
    for await (const row of this.#session.rows(
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
      const joinedAt = toNumber(row.get("joined_at"));
      const leftAt = optionalNumber(row.get("left_at"));
      if (joinedAt <= at && (leftAt === undefined || leftAt > at)) member = true;
    }
    if (member && current !== undefined) yield current;
  }

  async #intervalsOf(
    tenant: string,
    groupId: string,
    userId: string,
  ): Promise<MembershipInterval[]> {
    const result = await this.#run(this.#cql.membershipsOfUser, [tenant, groupId, userId], read);
    return result.rows.map((row) => ({
      joinedAt: toNumber(row.get("joined_at")),
      leftAt: optionalNumber(row.get("left_at")),
    }));
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
    if (this.#memberships === undefined) return Promise.resolve(undefined);
    return this.#versionReads.read(`${tenant}\u0000${groupId}`, async () => {
      const row = (await this.#run(this.#cql.groupLock, [tenant, groupId], read)).first();
      if (row?.get("lock_op")) return undefined;
      return row ? (optionalNumber(row.get("last_ts")) ?? 0) : 0;
    });
  }

  /**
   * A membership change, exact under crashes and retries:
   * 1. take the group's lock (an LWT on the static lock_op of group_sizes);
   * 2. read the state and plan every row to write, as absolute values with one
   *    write time later than the group's last change;
   * 3. insert the plan (IF NOT EXISTS: a recovery that fenced this change off
   *    makes it stop here, before writing anything);
   * 4. write the rows, then release the lock.
   * Whoever finds the lock older than the lease completes the change from its
   * plan, or fences it off when it has none. Rows written twice are the same
   * rows at the same write time, so a slow owner and a recovery can overlap.
   */
  async #changeMemberships(
    tenant: string,
    groupId: string,
    kind: "open" | "close",
    userIds: readonly string[],
    at: number,
  ): Promise<void> {
    if (userIds.length === 0) return;
    const opId = types.Uuid.random();
    try {
      await this.#lockGroup(tenant, groupId, opId);
      const lastTs = await this.#lastWriteTime(tenant, groupId);
      const ts = Math.max(this.#nextMicros(), lastTs + 1);
      const latest = await this.latestMemberships(tenant, groupId, userIds);
      const users: [string, number][] = [];
      for (const userId of new Set(userIds)) {
        const interval = latest.get(userId);
        const open = interval !== undefined && interval.leftAt === undefined;
        if (kind === "open" && !open) users.push([userId, at]);
        if (kind === "close" && open) users.push([userId, interval.joinedAt]);
      }
      const changed = users.length;
      if (changed === 0) {
        await this.#unlockGroup(tenant, groupId, opId, undefined);
        return;
      }
      const sizes = await this.#plannedSizes(
        tenant,
        groupId,
        at,
        kind === "open" ? changed : -changed,
      );
      const plan: MembershipPlan = { kind, ts, users, at, sizes };
      const inserted = await this.#run(
        this.#cql.insertPlan,
        [tenant, groupId, opId, JSON.stringify(plan)],
        write, // a retry finds its own plan
      );
      if (!inserted.wasApplied() && inserted.first().get("aborted") === true) {
        throw new StoreUnavailableError(
          `membership change of group ${groupId} took longer than its lock lease; retry`,
        );
      }
      await this.#applyPlan(tenant, groupId, plan);
      await this.#unlockGroup(tenant, groupId, opId, ts);
    } catch (error) {
      // Complete or fence off the change now rather than block the group for a lease.
      await this.#recoverChange(tenant, groupId, opId).catch(() => undefined);
      throw error;
    }
  }

  async #lockGroup(tenant: string, groupId: string, opId: types.Uuid): Promise<void> {
    const deadline = this.#clock() + this.#leaseMs + 5_000;
    for (let attempt = 0; ; attempt++) {
      const result = await this.#run(
        this.#cql.lockGroup,
        [opId, this.#long(this.#clock()), tenant, groupId],
        write, // a retry finds its own op id
      );
      if (result.wasApplied()) return;
      const holder = result.first().get("lock_op") as types.Uuid | null;
      if (holder !== null && String(holder) === String(opId)) return;
      if (holder !== null) {
        const lock = (
          await this.#run(this.#cql.groupLock, [tenant, groupId], { ...read, serialRead: true })
        ).first();
        const stillHeld = lock && String(lock.get("lock_op")) === String(holder);
        if (stillHeld && this.#isStale(lock.get("lock_since"))) {
          await this.#recoverChange(tenant, groupId, holder);
          continue;
        }
      }
      if (this.#clock() > deadline) {
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
    // Not applied: someone recovering the change released it, after writing the same rows.
    if (lastTs === undefined) {
      await this.#run(this.#cql.unlockGroup, [tenant, groupId, opId], write);
    } else {
      await this.#run(
        this.#cql.unlockGroupAfterWrite,
        [this.#long(lastTs), tenant, groupId, opId],
        write,
      );
    }
  }

  async #lastWriteTime(tenant: string, groupId: string): Promise<number> {
    const row = (
      await this.#run(this.#cql.groupLock, [tenant, groupId], { ...read, serialRead: true })
    ).first();
    return row ? (optionalNumber(row.get("last_ts")) ?? 0) : 0;
  }

  /** Completes a change from its plan, or fences it off if it has none, then releases its lock. */
  async #recoverChange(tenant: string, groupId: string, opId: types.Uuid): Promise<void> {
    const fenced = await this.#run(this.#cql.fencePlan, [tenant, groupId, opId], write);
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
    const base = (
      await this.#run(this.#cql.sizeBefore, [tenant, groupId, this.#long(at)], read)
    ).first();
    const sizes = new Map([[at, (base ? Number(base.get("members") ?? 0) : 0) + delta]]);
    for await (const row of this.#session.rows(
      this.#cql.sizesFrom,
      [tenant, groupId, this.#long(at)],
      { ...read, fetchSize: 1_000 },
    )) {
      sizes.set(toNumber(row.get("changed_at")), Number(row.get("members") ?? 0) + delta);
    }
    return [...sizes];
  }

  async #applyPlan(tenant: string, groupId: string, plan: MembershipPlan): Promise<void> {
    const rows = plan.users.map(([userId, joinedAt]) =>
      plan.kind === "open"
        ? { cql: this.#cql.openMembership, params: [tenant, groupId, userId, this.#long(joinedAt)] }
        : {
            cql: this.#cql.closeMembership,
            params: [this.#long(plan.at), tenant, groupId, userId, this.#long(joinedAt)],
          },
    );
    const sizes = plan.sizes.map(([changedAt, members]) => ({
      cql: this.#cql.putSize,
      params: [tenant, groupId, this.#long(changedAt), members],
    }));
    const batches = [...chunk(rows, membershipBatch), ...chunk(sizes, membershipBatch)];
    await mapConcurrently(batches, 4, (statements) =>
      this.#batch(statements, { ...write, timestamp: plan.ts, logged: false }),
    );
  }

  #isStale(lockSince: unknown): boolean {
    const since = optionalNumber(lockSince);
    return since === undefined || this.#clock() - since > this.#leaseMs;
  }

  // --- plumbing ---

  #run(cql: string, params: Params, options: StatementOptions): Promise<types.ResultSet> {
    return this.#session.execute(cql, params, options);
  }

  #batch(
    statements: readonly { cql: string; params: Params }[],
    options: StatementOptions & { readonly logged: boolean },
  ) {
    return this.#session.batch(statements, options);
  }

  /** A bigint column value in the encoding the Client was configured with. */
  #long(value: number): number | bigint {
    return this.#bigint ? BigInt(value) : value;
  }

  /** Strictly increasing microseconds, for write times. */
  #nextMicros(): number {
    this.#lastMicros = Math.max(this.#clock() * 1_000, this.#lastMicros + 1);
    return this.#lastMicros;
  }

  #toMessage(row: types.Row): TrackedMessage {
    return {
      conversationId: row.get("conversation_id") as string,
      conversationType: row.get("conversation_type") as ConversationType,
      messageId: row.get("message_id") as string,
      senderId: row.get("sender_id") as string,
      sentAt: toNumber(row.get("sent_at")),
      receiverId: row.get("receiver_id") as string,
    };
  }
}

function conversationFromRow(conversationId: string, row: types.Row): Conversation {
  const type = row.get("type") as ConversationType;
  const participants = [row.get("participant_a") as string, row.get("participant_b") as string];
  return { conversationId, type, participants: type === "c2c" ? participants : [] };
}

/** bigint columns come back as bigint or Long, depending on the Client's encoding. */
function toNumber(value: unknown): number {
  if (typeof value === "number") return value;
  if (typeof value === "bigint") return Number(value);
  if (value instanceof types.Long) return value.toNumber();
  throw new TypeError(`expected a bigint column value, got ${String(value)}`);
}

function isMemberAt(intervals: readonly MembershipInterval[], t: number): boolean {
  return intervals.some((i) => i.joinedAt <= t && (i.leftAt === undefined || i.leftAt > t));
}

function optionalNumber(value: unknown): number | undefined {
  return value === null || value === undefined ? undefined : toNumber(value);
}

function chunk<T>(items: readonly T[], size: number): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) =>
    items.slice(i * size, (i + 1) * size),
  );
}

function statements(keyspace: string) {
  const t = (table: string) => `${keyspace}.${table}`;
  const messageColumns =
    "conversation_id, conversation_type, message_id, sender_id, sent_at, receiver_id";
  const byConversation = `SELECT conversation_type, message_id, sender_id, sent_at, receiver_id
    FROM ${t("messages_by_conversation")} WHERE tenant = ? AND conversation_id = ? AND bucket = ?`;
  return {
    getConversation: `SELECT type, participant_a, participant_b FROM ${t("conversations")}
      WHERE tenant = ? AND conversation_id = ?`,
    insertConversation: `INSERT INTO ${t("conversations")}
      (tenant, conversation_id, type, participant_a, participant_b) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS`,
    getMessage: `SELECT ${messageColumns} FROM ${t("messages")} WHERE tenant = ? AND message_id = ?`,
    insertMessage: `INSERT INTO ${t("messages")}
      (tenant, message_id, conversation_id, conversation_type, sender_id, sent_at, receiver_id, track_id)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`,
    insertBucket: `INSERT INTO ${t("conversation_buckets")} (tenant, conversation_id, bucket) VALUES (?, ?, ?)`,
    bucketsBetween: `SELECT bucket FROM ${t("conversation_buckets")}
      WHERE tenant = ? AND conversation_id = ? AND bucket >= ? AND bucket <= ?`,
    insertMessageByConversation: `INSERT INTO ${t("messages_by_conversation")}
      (tenant, conversation_id, bucket, sent_at, message_id, conversation_type, sender_id, receiver_id)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    messagesAfterCursor: `${byConversation} AND (sent_at, message_id) > (?, ?) AND sent_at <= ? LIMIT ?`,
    messagesBetween: `${byConversation} AND sent_at > ? AND sent_at <= ? LIMIT ?`,
    messagesUpTo: `${byConversation} AND sent_at <= ? LIMIT ?`,

    insertReader: `INSERT INTO ${t("readers_by_message")} (tenant, message_id, reader_id, read_at)
      VALUES (?, ?, ?, ?) USING TIMESTAMP ?`,
    getReader: `SELECT reader_id FROM ${t("readers_by_message")}
      WHERE tenant = ? AND message_id = ? AND reader_id = ?`,
    getReaderReadAt: `SELECT read_at FROM ${t("readers_by_message")}
      WHERE tenant = ? AND message_id = ? AND reader_id = ?`,
    deleteReader: `DELETE FROM ${t("readers_by_message")} WHERE tenant = ? AND message_id = ? AND reader_id = ?`,
    countReaders: `SELECT COUNT(*) AS n FROM ${t("readers_by_message")} WHERE tenant = ? AND message_id = ?`,
    readerIds: `SELECT reader_id FROM ${t("readers_by_message")} WHERE tenant = ? AND message_id = ?`,
    readersAfter: `SELECT reader_id, read_at FROM ${t("readers_by_message")}
      WHERE tenant = ? AND message_id = ? AND reader_id > ? LIMIT ?`,
    readerIdsBetween: `SELECT reader_id FROM ${t("readers_by_message")}
      WHERE tenant = ? AND message_id = ? AND reader_id > ? AND reader_id <= ?`,
    receiptRecords: `SELECT message_id, read_at, write_ts FROM ${t("receipts_by_reader")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? AND (sent_at, message_id) IN ?`,
    insertReceiptRecord: `INSERT INTO ${t("receipts_by_reader")}
      (tenant, conversation_id, reader_id, sent_at, message_id, read_at, write_ts)
      VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?`,
    receiptsOfReaderFrom: `SELECT sent_at, message_id, write_ts FROM ${t("receipts_by_reader")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? AND sent_at >= ?`,
    deleteReceiptByReader: `DELETE FROM ${t("receipts_by_reader")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? AND sent_at = ? AND message_id = ?`,

    getHorizon: `SELECT read_up_to FROM ${t("horizons")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ?`,
    insertHorizon: `INSERT INTO ${t("horizons")} (tenant, conversation_id, reader_id, read_up_to)
      VALUES (?, ?, ?, ?) IF NOT EXISTS`,
    moveHorizon: `UPDATE ${t("horizons")} SET read_up_to = ?
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? IF read_up_to = ?`,
    insertHorizonIndex: `INSERT INTO ${t("horizons_by_time")} (tenant, conversation_id, read_up_to, reader_id)
      VALUES (?, ?, ?, ?)`,
    deleteHorizonIndex: `DELETE FROM ${t("horizons_by_time")}
      WHERE tenant = ? AND conversation_id = ? AND read_up_to = ? AND reader_id = ?`,
    insertHorizonSet: `INSERT INTO ${t("horizon_sets")} (tenant, conversation_id, reader_id, read_up_to, set_at)
      VALUES (?, ?, ?, ?, ?)`,
    horizonSetAt: `SELECT set_at FROM ${t("horizon_sets")}
      WHERE tenant = ? AND conversation_id = ? AND reader_id = ? AND read_up_to >= ? LIMIT 1`,
    horizonIndexFrom: `SELECT reader_id FROM ${t("horizons_by_time")}
      WHERE tenant = ? AND conversation_id = ? AND read_up_to >= ?`,

    membershipsOfUsers: `SELECT user_id, joined_at, left_at FROM ${t("memberships")}
      WHERE tenant = ? AND group_id = ? AND user_id IN ?`,
    membershipsOfUser: `SELECT joined_at, left_at FROM ${t("memberships")}
      WHERE tenant = ? AND group_id = ? AND user_id = ?`,
    membershipsAfter: `SELECT user_id, joined_at, left_at FROM ${t("memberships")}
      WHERE tenant = ? AND group_id = ? AND user_id > ?`,
    // Re-opening an empty interval [t, t) when a user leaves and rejoins within one millisecond.
    // left_at is left unset, not written as null: a null is a tombstone per open interval,
    // which every page of a large group's members would read past.
    openMembership: `INSERT INTO ${t("memberships")} (tenant, group_id, user_id, joined_at)
      VALUES (?, ?, ?, ?)`,
    closeMembership: `UPDATE ${t("memberships")} SET left_at = ?
      WHERE tenant = ? AND group_id = ? AND user_id = ? AND joined_at = ?`,

    sizeAt: `SELECT lock_op, lock_since, members FROM ${t("group_sizes")}
      WHERE tenant = ? AND group_id = ? AND changed_at <= ? LIMIT 1`,
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
