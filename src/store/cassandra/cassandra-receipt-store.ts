import type { Client } from "cassandra-driver";
import { PartsReceiptStore } from "../parts-receipt-store.js";
import type { ReadCountCache } from "../read-count-cache.js";
import { CassandraDeletionMarkers } from "./cassandra-deletion-markers.js";
import { CassandraHorizons } from "./cassandra-horizons.js";
import { CassandraMembershipHistory } from "./cassandra-membership-history.js";
import { CassandraMessageDeletions } from "./cassandra-message-deletions.js";
import { CassandraMessages } from "./cassandra-messages.js";
import { CassandraOutbox } from "./cassandra-outbox.js";
import { CassandraPrivacy } from "./cassandra-privacy.js";
import { CassandraReaderReceipts } from "./cassandra-reader-receipts.js";
import { CassandraReceiptLedger } from "./cassandra-receipt-ledger.js";
import { ReceiptTombstones } from "./cassandra-receipt-tombstones.js";
import { unreadMembersOf } from "./cassandra-unread-members.js";
import { CassandraUserData } from "./cassandra-user-data.js";
import { CassandraUserIndex } from "./cassandra-user-index.js";
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
  /**
   * An instance that has not swept its outbox entries for this long is taken for dead, and
   * the others sweep them (10 s by default).
   */
  readonly outboxWriterLapseMs?: number;
  /** Called by close(): releases what the store was opened with, when it owns it. */
  readonly release?: () => Promise<void>;
}

/** Default of `localCacheEntries`: about 40 MB of messages and 15 MB of membership facts. */
const defaultLocalCacheEntries = 50_000;

/**
 * The production store: Apache Cassandra for the truth, with an optional
 * read-count cache (Redis) in front of the readers partitions. The data model
 * is in docs/data-model.md and src/store/cassandra/schema/.
 *
 * One module per concern, each owning its tables' statements and caches:
 * messages (CassandraMessages), the receipt ledger (CassandraReceiptLedger),
 * read horizons (CassandraHorizons), membership history and its changes
 * (CassandraMembershipHistory, CassandraGroupChanges) and the outbox
 * (CassandraOutbox), settings and private reads (CassandraPrivacy); unread members need two of them (unreadMembersOf).
 *
 * The Client (one per process) and the cache are the caller's, closed by
 * `release` if the caller hands them over; the Client may use either bigint
 * encoding of the driver.
 */
export class CassandraReceiptStore extends PartsReceiptStore {
  constructor(client: Client, options: CassandraReceiptStoreOptions) {
    const session = new CqlSession(client, {
      consistency: options.consistency ?? "LOCAL_QUORUM",
      serialConsistency: options.serialConsistency ?? "LOCAL_SERIAL",
    });
    const clock = options.clock ?? Date.now;
    const context: CqlContext = {
      session,
      keyspace: options.keyspace,
      long: longEncoderOf(client),
      writeClock: new WriteClock(clock),
      concurrency: options.concurrency ?? 32,
      clock,
    };
    const entries = options.localCacheEntries ?? defaultLocalCacheEntries;
    const outbox = new CassandraOutbox(session, options.keyspace, {
      ...(options.outboxWriterLapseMs !== undefined && {
        writerLapseMs: options.outboxWriterLapseMs,
      }),
    });
    const index = new CassandraUserIndex(context);
    const markers = new CassandraDeletionMarkers(context);
    const tombstones = new ReceiptTombstones(context, options.cache);
    const readerReceipts = new CassandraReaderReceipts(context, options.cache);
    const ledger = new CassandraReceiptLedger(context, outbox, options.cache, index, {
      markers,
      tombstones,
      readerReceipts,
    });
    const messages = new CassandraMessages(context, entries, index, markers);
    const history = new CassandraMembershipHistory(context, {
      lockLeaseMs: options.membershipLockLeaseMs ?? 30_000,
      memoryEntries: entries,
      index,
    });
    const horizons = new CassandraHorizons(context, outbox, index);
    super({
      messages,
      deletions: new CassandraMessageDeletions(context, { messages, markers, tombstones, outbox }),
      ledger,
      horizons,
      history,
      userData: new CassandraUserData(context, {
        index,
        messages,
        ledger,
        readerReceipts,
        horizons,
        history,
      }),
      outbox: {
        pendingChanges: (before, limit) => outbox.pending(before, limit),
        clearPendingChanges: (changes) => outbox.clear(changes),
      },
      privacy: new CassandraPrivacy(context),
      listUnreadMembers: unreadMembersOf(history, ledger),
      firstPagesInFlight: context.concurrency,
      async ping() {
        await session.execute("SELECT release_version FROM system.local", [], read);
      },
      close: async () => {
        await options.release?.();
      },
    });
  }
}
