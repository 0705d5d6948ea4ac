import { pendingDeletion, type TrackedMessage } from "../../domain/model.js";
import { mapConcurrently } from "../map-concurrently.js";
import type { MessageStore } from "../receipt-store.js";
import type { CassandraDeletionMarkers } from "./cassandra-deletion-markers.js";
import { bucketMs, type CassandraMessages } from "./cassandra-messages.js";
import type { CassandraOutbox } from "./cassandra-outbox.js";
import type { ReceiptTombstones } from "./cassandra-receipt-tombstones.js";
import { afterEveryWriteMicros, type CqlContext, write } from "./cql-values.js";

export interface MessageDeletionParts {
  readonly messages: CassandraMessages;
  readonly markers: CassandraDeletionMarkers;
  readonly tombstones: ReceiptTombstones;
  readonly outbox: CassandraOutbox;
}

/**
 * DeleteMessages on Cassandra, which has no transaction across tables, in an order that a
 * crash at any step leaves completable: (1) the pending deletion changes (the outbox), (2) the
 * deletion markers, from which point the id is unknown to TrackMessages and to receipts,
 * (3) the receipts (ReceiptTombstones), (4) the message rows, with tombstones later than any
 * write, (5) this process's memory of them. A retry, or the outbox sweep, runs (3) to (5) again
 * from the marker.
 *
 * A receipt racing the deletion: see CassandraReceiptLedger.insertReceipts, which reads the
 * markers after writing its rows. Other instances that remember the message in memory still
 * find it in getMessages (their reads answer with no readers) until it leaves their memory;
 * their receipts are refused all the same, by the marker.
 */
export class CassandraMessageDeletions
  implements Pick<MessageStore, "deleteMessages" | "deletedMessages">
{
  readonly #context: CqlContext;
  readonly #parts: MessageDeletionParts;
  readonly #cql: ReturnType<typeof statements>;

  constructor(context: CqlContext, parts: MessageDeletionParts) {
    this.#context = context;
    this.#parts = parts;
    this.#cql = statements(context.keyspace);
  }

  async deleteMessages(
    tenant: string,
    conversationId: string,
    messageIds: readonly string[],
    deletedAt: number,
  ): Promise<TrackedMessage[]> {
    const { markers, messages, outbox } = this.#parts;
    const ids = [...new Set(messageIds)];
    const [marked, tracked] = await Promise.all([
      markers.find(tenant, ids),
      messages.getMessages(tenant, ids),
    ]);
    const inConversation = (m: TrackedMessage | undefined): m is TrackedMessage =>
      m?.conversationId === conversationId;
    const fresh = ids.map((id) => tracked.get(id)).filter(inConversation);
    const doomed = fresh.filter((m) => !marked.has(m.messageId));
    await outbox.keep(doomed.map((m) => pendingDeletion(tenant, m, deletedAt)));
    await markers.mark(tenant, doomed, deletedAt);
    const toRemove = [...doomed, ...[...marked.values()].filter(inConversation)];
    await mapConcurrently(toRemove, this.#context.concurrency, (m) => this.#remove(tenant, m));
    return doomed;
  }

  deletedMessages(tenant: string, messageIds: readonly string[]) {
    return this.#parts.markers.find(tenant, messageIds);
  }

  async #remove(tenant: string, message: TrackedMessage): Promise<void> {
    const { session, long } = this.#context;
    const { conversationId, messageId, sentAt } = message;
    await this.#parts.tombstones.removeAll(tenant, message);
    const gone = { ...write, timestamp: afterEveryWriteMicros };
    const bucket = long(Math.floor(sentAt / bucketMs));
    await Promise.all([
      session.execute(this.#cql.deleteMessage, [tenant, messageId], gone),
      session.execute(
        this.#cql.deleteByConversation,
        [tenant, conversationId, bucket, long(sentAt), messageId],
        gone,
      ),
    ]);
    this.#parts.messages.forget(tenant, messageId);
  }
}

function statements(keyspace: string) {
  return {
    deleteMessage: `DELETE FROM ${keyspace}.messages WHERE tenant = ? AND message_id = ?`,
    deleteByConversation: `DELETE FROM ${keyspace}.messages_by_conversation
      WHERE tenant = ? AND conversation_id = ? AND bucket = ? AND sent_at = ? AND message_id = ?`,
  };
}
