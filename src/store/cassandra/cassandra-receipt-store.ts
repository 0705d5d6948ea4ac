import type { Client } from "cassandra-driver";
import type { Member, PendingChange, ReadMember, TrackedMessage } from "../../domain/model.js";
import { firstPagesOf } from "../derived-reads.js";
import type { ReadCountCache } from "../read-count-cache.js";
import type {
  FirstPageRequest,
  MembershipProbe,
  MessageCursor,
  NewReceipt,
  ReceiptStore,
} from "../receipt-store.js";
import { CassandraHorizons } from "./cassandra-horizons.js";
import { CassandraMembershipHistory } from "./cassandra-membership-history.js";
import { CassandraMessages } from "./cassandra-messages.js";
import { CassandraOutbox } from "./cassandra-outbox.js";
import { CassandraReceiptLedger } from "./cassandra-receipt-ledger.js";
import { type Consistency, CqlSession, type SerialConsistency } from "./cql-session.js";
import { type CqlContext, longEncoderOf, read, WriteClock } from "./cql-values.js";

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

/** Default of `localCacheEntries`: about 40 MB of messages and 15 MB of membership facts. */
const defaultLocalCacheEntries = 50_000;
/**
 * Candidates checked against the readers partition at once when listing
 * unread members: a page's worth first (most members of a large group have
 * not read a message), twice as many each time a step comes up short.
 */
const maxUnreadBatch = 2_000;

/**
 * The production store: Apache Cassandra for the truth, with an optional
 * read-count cache (Redis) in front of the readers partitions. The data model
 * is in docs/data-model.md and src/store/cassandra/schema/.
 *
 * One module per concern, each owning its tables' statements and caches:
 * messages (CassandraMessages), the receipt ledger (CassandraReceiptLedger),
 * read horizons (CassandraHorizons), membership history and its changes
 * (CassandraMembershipHistory, CassandraGroupChanges) and the outbox
 * (CassandraOutbox). This class delegates to them and answers the one
 * query that needs two of them: unread members (members minus readers).
 *
 * The Client (one per process) and the cache are the caller's, closed by
 * `release` if the caller hands them over; the Client may use either bigint
 * encoding of the driver.
 */
export class CassandraReceiptStore implements ReceiptStore {
  readonly #context: CqlContext;
  readonly #messages: CassandraMessages;
  readonly #ledger: CassandraReceiptLedger;
  readonly #horizons: CassandraHorizons;
  readonly #history: CassandraMembershipHistory;
  readonly #outbox: CassandraOutbox;
  readonly #release: (() => Promise<void>) | undefined;

  constructor(client: Client, options: CassandraReceiptStoreOptions) {
    const session = new CqlSession(client, {
      consistency: options.consistency ?? "LOCAL_QUORUM",
      serialConsistency: options.serialConsistency ?? "LOCAL_SERIAL",
    });
    const clock = options.clock ?? Date.now;
    this.#context = {
      session,
      keyspace: options.keyspace,
      long: longEncoderOf(client),
      writeClock: new WriteClock(clock),
      concurrency: options.concurrency ?? 32,
      clock,
    };
    const entries = options.localCacheEntries ?? defaultLocalCacheEntries;
    this.#outbox = new CassandraOutbox(session, options.keyspace);
    this.#messages = new CassandraMessages(this.#context, entries);
    this.#ledger = new CassandraReceiptLedger(this.#context, this.#outbox, options.cache);
    this.#horizons = new CassandraHorizons(this.#context, this.#outbox);
    this.#history = new CassandraMembershipHistory(this.#context, {
      lockLeaseMs: options.membershipLockLeaseMs ?? 30_000,
      memoryEntries: entries,
    });
    this.#release = options.release;
  }

  // --- conversations and messages ---

  getConversation(tenant: string, conversationId: string) {
    return this.#messages.getConversation(tenant, conversationId);
  }

  getMessages(tenant: string, messageIds: readonly string[]) {
    return this.#messages.getMessages(tenant, messageIds);
  }

  insertMessages(tenant: string, messages: readonly TrackedMessage[]) {
    return this.#messages.insertMessages(tenant, messages);
  }

  listMessagesSentBetween(
    tenant: string,
    conversationId: string,
    range: { readonly after: number | undefined; readonly upTo: number },
    cursor: MessageCursor | undefined,
    limit: number,
  ) {
    return this.#messages.listMessagesSentBetween(tenant, conversationId, range, cursor, limit);
  }

  // --- receipts ---

  insertReceipts(tenant: string, readerId: string, receipts: readonly NewReceipt[]) {
    return this.#ledger.insertReceipts(tenant, readerId, receipts);
  }

  readCounts(tenant: string, messages: readonly TrackedMessage[]) {
    return this.#ledger.readCounts(tenant, messages);
  }

  listReaders(tenant: string, message: TrackedMessage, after: string | undefined, limit: number) {
    return this.#ledger.listReaders(tenant, message, after, limit);
  }

  receiverReadTimes(tenant: string, messages: readonly TrackedMessage[]) {
    return this.#ledger.receiverReadTimes(tenant, messages);
  }

  listFirstPages(
    tenant: string,
    pages: readonly FirstPageRequest[],
    limit: number,
  ): Promise<ReadMember[][]> {
    return firstPagesOf(this, tenant, pages, limit, this.#context.concurrency);
  }

  hasRead(tenant: string, readerId: string, messageIds: readonly string[]) {
    return this.#ledger.hasRead(tenant, readerId, messageIds);
  }

  deleteReceiptsFrom(tenant: string, groupId: string, userId: string, fromSentAt: number) {
    return this.#ledger.deleteReceiptsFrom(tenant, groupId, userId, fromSentAt);
  }

  // --- read horizons ---

  getHorizon(tenant: string, conversationId: string, readerId: string) {
    return this.#horizons.getHorizon(tenant, conversationId, readerId);
  }

  advanceHorizon(
    tenant: string,
    conversationId: string,
    readerId: string,
    upTo: number,
    at: number,
  ) {
    return this.#horizons.advanceHorizon(tenant, conversationId, readerId, upTo, at);
  }

  horizonsFrom(tenant: string, conversationId: string, at: number) {
    return this.#horizons.horizonsFrom(tenant, conversationId, at);
  }

  noteHorizonSet(
    tenant: string,
    conversationId: string,
    readerId: string,
    readUpTo: number,
    setAt: number,
  ) {
    return this.#horizons.noteHorizonSet(tenant, conversationId, readerId, readUpTo, setAt);
  }

  horizonSetTimes(
    tenant: string,
    conversationId: string,
    readerId: string,
    times: readonly number[],
  ) {
    return this.#horizons.horizonSetTimes(tenant, conversationId, readerId, times);
  }

  // --- membership history ---

  latestMemberships(tenant: string, groupId: string, userIds: readonly string[]) {
    return this.#history.latestMemberships(tenant, groupId, userIds);
  }

  openMemberships(tenant: string, groupId: string, userIds: readonly string[], joinedAt: number) {
    return this.#history.openMemberships(tenant, groupId, userIds, joinedAt);
  }

  closeMemberships(tenant: string, groupId: string, userIds: readonly string[], leftAt: number) {
    return this.#history.closeMemberships(tenant, groupId, userIds, leftAt);
  }

  wasMemberAt(tenant: string, groupId: string, userId: string, times: readonly number[]) {
    return this.#history.wasMemberAt(tenant, groupId, userId, times);
  }

  memberCountAt(tenant: string, groupId: string, at: number) {
    return this.#history.memberCountAt(tenant, groupId, at);
  }

  membershipAt(tenant: string, groupId: string, probes: readonly MembershipProbe[]) {
    return this.#history.membershipAt(tenant, groupId, probes);
  }

  /** Members and readers are both ordered by user id: compared range by range. */
  async listUnreadMembers(
    tenant: string,
    message: TrackedMessage,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<string[]> {
    const unread: string[] = [];
    let batch: string[] = [];
    let batchSize = limit + 16;
    let checkedThrough = afterUserId ?? "";
    const check = async (): Promise<void> => {
      const last = batch.at(-1);
      if (last === undefined) return;
      const readers = await this.#ledger.readersBetween(
        tenant,
        message.messageId,
        checkedThrough,
        last,
      );
      for (const userId of batch) {
        if (!readers.has(userId) && unread.length < limit) unread.push(userId);
      }
      checkedThrough = last;
      batch = [];
      batchSize = Math.min(batchSize * 2, maxUnreadBatch);
    };
    const { conversationId, sentAt } = message;
    const members = this.#history.membersAt(tenant, conversationId, sentAt, afterUserId, batchSize);
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

  listCurrentMembers(
    tenant: string,
    groupId: string,
    afterUserId: string | undefined,
    limit: number,
  ): Promise<Member[]> {
    return this.#history.listCurrentMembers(tenant, groupId, afterUserId, limit);
  }

  // --- outbox ---

  pendingChanges(before: number, limit: number): Promise<PendingChange[]> {
    return this.#outbox.pending(before, limit);
  }

  clearPendingChanges(changes: readonly PendingChange[]): Promise<void> {
    return this.#outbox.clear(changes);
  }

  async ping(): Promise<void> {
    await this.#context.session.execute("SELECT release_version FROM system.local", [], read);
  }

  async close(): Promise<void> {
    await this.#release?.();
  }
}
