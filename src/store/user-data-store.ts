import type { TrackedMessage } from "../domain/model.js";
import type { ReceiptVisibility } from "./receipt-store.js";

/**
 * Everything stored about one user, by user: the right of access (export) and the right to
 * erasure (GDPR Art. 15, 17, 20). Both backends implement it and pass test/user-data-contract.ts.
 *
 * Erasure is a list of per-concern steps (src/domain/user-erasure.ts), each removing a bounded
 * chunk of one kind of row per call. A chunk is idempotent: what it removed is gone, so doing a
 * chunk again after a crash removes the rest. A step is finished when a chunk returns no cursor.
 */
export interface UserDataStore {
  /** The user's erasure record, if an erasure was ever started. */
  erasureOf(tenant: string, userId: string): Promise<ErasureRecord | undefined>;

  /**
   * Writes the record if the stored one still has `expectedVersion` (undefined: none stored),
   * with version `record.version`. False when another call wrote it first.
   */
  saveErasure(
    tenant: string,
    userId: string,
    record: ErasureRecord,
    expectedVersion: number | undefined,
  ): Promise<boolean>;

  /**
   * Read horizons of the user (and their index entries). Every chunk method removes up to
   * `limit` rows from `cursor` on (undefined: the start) and says where to go on.
   */
  eraseHorizonsOf(tenant: string, userId: string, cursor: Cursor, limit: number): Promise<Chunk>;

  /** When each of the user's horizons was set (horizon_sets). */
  eraseHorizonSetTimesOf(
    tenant: string,
    userId: string,
    cursor: Cursor,
    limit: number,
  ): Promise<Chunk>;

  /** The user's receipts; each message's read count (and its cached count) goes down with it. */
  eraseReceiptsOf(tenant: string, userId: string, cursor: Cursor, limit: number): Promise<Chunk>;

  /**
   * The user's membership intervals in every group, with the group's member counts at every
   * time the user was counted in (and every cached fact derived from them).
   */
  eraseMembershipsOf(tenant: string, userId: string, cursor: Cursor, limit: number): Promise<Chunk>;

  /**
   * Messages the user sent (sender id) or received (C2C receiver id) stay tracked with that id
   * replaced by `erasedUserId` (src/domain/model.ts), as are the C2C conversations' participants.
   */
  pseudonymiseMessagesOf(
    tenant: string,
    userId: string,
    cursor: Cursor,
    limit: number,
  ): Promise<Chunk>;

  /** The backend's own lookups by user (Cassandra); last, once nothing else is left. */
  eraseUserIndexOf(tenant: string, userId: string, cursor: Cursor, limit: number): Promise<Chunk>;

  /** Everything stored about the user, a kind at a time, each in a stable order. */
  exportUserData(tenant: string, userId: string): AsyncIterable<UserDataRecord>;
}

/** Where a step goes on; undefined at its start. */
export type Cursor = string | undefined;

export interface Chunk {
  readonly removed: number;
  /** Undefined once the step has nothing left. */
  readonly cursor: Cursor;
}

/** The progress of one user's erasure, kept in the store so that any call on any instance resumes it. */
export interface ErasureRecord {
  readonly state: "erasing" | "done";
  readonly startedAt: number;
  /** When the latest pass finished; set once done. */
  readonly finishedAt?: number;
  /** The step under way (its name, so that steps added later resume right); "" when done. */
  readonly step: string;
  readonly cursor: Cursor;
  /** Rows removed so far by each step, over every pass. */
  readonly removed: Readonly<Record<string, number>>;
  /** Bumped by every save: two calls of one erasure never both record the same chunk. */
  readonly version: number;
}

/** One stored fact about a user (ExportUserData). */
export type UserDataRecord =
  | {
      readonly kind: "receipt";
      readonly conversationId: string;
      readonly messageId: string;
      readonly readAt: number;
    }
  | { readonly kind: "horizon"; readonly conversationId: string; readonly readUpTo: number }
  | {
      readonly kind: "horizon_set";
      readonly conversationId: string;
      readonly readUpTo: number;
      readonly setAt: number;
    }
  | {
      readonly kind: "membership";
      readonly groupId: string;
      readonly joinedAt: number;
      readonly leftAt: number | undefined;
    }
  /** A tracked message the user sent, or received (C2C). */
  | { readonly kind: "message"; readonly message: TrackedMessage }
  /** A receipt setting: the user's default (conversationId "") or one conversation's. */
  | {
      readonly kind: "receipt_setting";
      readonly conversationId: string;
      readonly visibility: ReceiptVisibility;
    }
  | {
      readonly kind: "private_receipt";
      readonly conversationId: string;
      readonly messageId: string;
      readonly readAt: number;
    };
