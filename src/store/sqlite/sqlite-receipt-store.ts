import type { DatabaseSync } from "node:sqlite";
import { PartsReceiptStore } from "../parts-receipt-store.js";
import { SqliteHorizons } from "./sqlite-horizons.js";
import { SqliteMembershipHistory } from "./sqlite-membership-history.js";
import { SqliteMessageDeletions } from "./sqlite-message-deletions.js";
import { SqliteMessages } from "./sqlite-messages.js";
import { SqliteOutbox } from "./sqlite-outbox.js";
import { SqlitePrivacy } from "./sqlite-privacy.js";
import { SqliteReceiptLedger } from "./sqlite-receipt-ledger.js";
import { SqliteRetention } from "./sqlite-retention.js";
import { SqliteUserData } from "./sqlite-user-data.js";
import type { SqliteWriteBatcher } from "./sqlite-write-batcher.js";

/**
 * The embedded store: one SQLite file through `node:sqlite`. Calls are
 * synchronous underneath, so each method is atomic with respect to the others
 * in this process; multi-row writes run in one transaction, through the
 * connection's one write batcher (group commit), which the change feed on the
 * same connection shares.
 *
 * One module per concern, as in the Cassandra store: messages, the receipt
 * ledger, horizons, membership history, the outbox and privacy (settings, private reads); unread members, which
 * joins memberships and receipts, is one statement here.
 */
export class SqliteReceiptStore extends PartsReceiptStore {
  /** The pruning job of the tenants' retention (runs every minute unless `pruneEveryMs` is 0). */
  readonly retention: SqliteRetention;

  constructor(
    db: DatabaseSync,
    writes: SqliteWriteBatcher,
    options: {
      readonly clock?: () => number;
      readonly pruneEveryMs?: number;
      readonly pruneChunkRows?: number;
    } = {},
  ) {
    const clock = options.clock ?? Date.now;
    const outbox = new SqliteOutbox(db, writes);
    const retention = new SqliteRetention(db, writes, {
      clock,
      everyMs: options.pruneEveryMs ?? 60_000,
      ...(options.pruneChunkRows === undefined ? {} : { chunkRows: options.pruneChunkRows }),
    });
    const unreadMembers = db.prepare(
      `SELECT m.user_id FROM memberships m
       WHERE m.tenant = $tenant AND m.group_id = $group
         AND m.joined_at <= $at AND (m.left_at IS NULL OR m.left_at > $at)
         AND m.user_id > $after AND m.user_id <> $sender
         AND NOT EXISTS (
           SELECT 1 FROM receipts r
           WHERE r.tenant = $tenant AND r.message_id = $message AND r.reader_id = m.user_id)
       ORDER BY m.user_id LIMIT $limit`,
    );
    super({
      messages: new SqliteMessages(db, writes, clock),
      deletions: new SqliteMessageDeletions(db, writes, outbox),
      ledger: new SqliteReceiptLedger(db, writes, outbox),
      horizons: new SqliteHorizons(db, writes, outbox),
      history: new SqliteMembershipHistory(db, writes),
      outbox,
      userData: new SqliteUserData(db, writes),
      privacy: new SqlitePrivacy(db, writes),
      async listUnreadMembers(tenant, message, afterUserId, limit) {
        const rows = unreadMembers.all({
          tenant,
          group: message.conversationId,
          at: message.sentAt,
          after: afterUserId ?? "",
          sender: message.senderId,
          message: message.messageId,
          limit,
        }) as unknown as { user_id: string }[];
        return rows.map((row) => row.user_id);
      },
      // Synchronous underneath: one at a time, in order.
      firstPagesInFlight: 1,
      async ping() {
        db.prepare("SELECT 1").get();
      },
      async close() {
        await retention.close();
        if (db.isOpen) db.close();
      },
    });
    this.retention = retention;
  }
}
