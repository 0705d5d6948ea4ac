/**
 * Versioned schema of the embedded store. Each entry runs once, in order, in
 * its own transaction; `PRAGMA user_version` records how far a database got.
 * Never edit a released entry: append a new one.
 */
export const migrations: readonly string[] = [
  `
  CREATE TABLE conversations (
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    type TEXT NOT NULL,
    participant_a TEXT NOT NULL,
    participant_b TEXT NOT NULL,
    PRIMARY KEY (tenant, conversation_id)
  ) WITHOUT ROWID;

  CREATE TABLE messages (
    tenant TEXT NOT NULL,
    message_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    conversation_type TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    receiver_id TEXT NOT NULL,
    -- kept exact by updating it in the same transaction as the receipts
    read_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, message_id)
  ) WITHOUT ROWID;
  CREATE INDEX messages_by_conversation_time
    ON messages (tenant, conversation_id, sent_at, message_id);

  CREATE TABLE receipts (
    tenant TEXT NOT NULL,
    message_id TEXT NOT NULL,
    reader_id TEXT NOT NULL,
    read_at INTEGER NOT NULL,
    conversation_id TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, message_id, reader_id)
  ) WITHOUT ROWID;
  CREATE INDEX receipts_by_reader
    ON receipts (tenant, conversation_id, reader_id, sent_at);

  CREATE TABLE horizons (
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    reader_id TEXT NOT NULL,
    read_up_to INTEGER NOT NULL,
    PRIMARY KEY (tenant, conversation_id, reader_id)
  ) WITHOUT ROWID;
  CREATE INDEX horizons_by_time ON horizons (tenant, conversation_id, read_up_to);

  CREATE TABLE memberships (
    tenant TEXT NOT NULL,
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    left_at INTEGER,
    PRIMARY KEY (tenant, group_id, user_id, joined_at)
  ) WITHOUT ROWID;

  -- Running totals so that "members at t" is one row read whenever t is at or
  -- after the group's latest membership change (the usual case: messages are
  -- tracked as they are sent).
  CREATE TABLE groups (
    tenant TEXT NOT NULL,
    group_id TEXT NOT NULL,
    member_count INTEGER NOT NULL,
    last_change_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, group_id)
  ) WITHOUT ROWID;

  CREATE TABLE changes (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    payload TEXT NOT NULL
  );
  CREATE INDEX changes_by_tenant ON changes (tenant, position);
  CREATE INDEX changes_by_age ON changes (created_at);
  -- Highest position ever pruned: a resume from at or before it may have missed changes.
  CREATE TABLE change_log_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_through INTEGER NOT NULL
  );
  INSERT INTO change_log_state (id, pruned_through) VALUES (1, 0);
  `,
  // 2: positions counted per tenant (a tenant's tokens never move with another's traffic), what
  // the log already announced (each receipt once, counts that never go down), and the outbox of
  // changes stored with their receipts but not yet in the log. Positions of version 1 were shared
  // by all tenants: its log is dropped, and its resume tokens (rt1) are answered OUT_OF_RANGE.
  `
  DROP TABLE changes;
  DROP TABLE change_log_state;

  CREATE TABLE change_log (
    tenant TEXT NOT NULL,
    position INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (tenant, position)
  ) WITHOUT ROWID;
  CREATE INDEX change_log_by_age ON change_log (created_at);

  -- Newest position of each tenant, and the highest one pruned: a resume from at or before it
  -- may have missed changes.
  CREATE TABLE change_log_heads (
    tenant TEXT NOT NULL PRIMARY KEY,
    head INTEGER NOT NULL,
    pruned_through INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;

  -- What the log announced, by key: 'r' || message || reader (a receipt, value 1), 'n' ||
  -- message (its highest count), 'h' || conversation || reader (its newest horizon).
  CREATE TABLE announced (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    value INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
  ) WITHOUT ROWID;
  CREATE INDEX announced_by_age ON announced (created_at);

  -- Changes stored but maybe not yet in the change log, written in the transaction of their fact.
  CREATE TABLE outbox (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
  ) WITHOUT ROWID;
  CREATE INDEX outbox_by_age ON outbox (created_at);
  `,
  // 3: when each horizon was set (the read time of messages tracked later under it).
  `
  -- When each horizon was set: the read time of messages tracked later under it.
  CREATE TABLE horizon_sets (
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    reader_id TEXT NOT NULL,
    read_up_to INTEGER NOT NULL,
    set_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, conversation_id, reader_id, read_up_to)
  ) WITHOUT ROWID;
  `,
  // 4: everything about one user, by user (ExportUserData, EraseUser), and each erasure's progress.
  `
  CREATE INDEX receipts_of_reader ON receipts (tenant, reader_id, message_id);
  CREATE INDEX horizons_of_reader ON horizons (tenant, reader_id, conversation_id);
  CREATE INDEX horizon_sets_of_reader ON horizon_sets (tenant, reader_id, conversation_id);
  CREATE INDEX memberships_of_user ON memberships (tenant, user_id, group_id);
  CREATE INDEX messages_of_sender ON messages (tenant, sender_id, message_id);
  CREATE INDEX messages_of_receiver ON messages (tenant, receiver_id, message_id);

  -- The progress of each user's erasure (JSON, see ErasureRecord), saved by compare-and-set on version.
  CREATE TABLE user_erasures (
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (tenant, user_id)
  ) WITHOUT ROWID;
  `,
  // 5: receipt settings and private reads, apart from receipts (whose counts mean shown reads).
  `
  -- A user's receipt settings: its default (conversation_id '') and per-conversation overrides.
  CREATE TABLE receipt_settings (
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    visibility TEXT NOT NULL,
    PRIMARY KEY (tenant, user_id, conversation_id)
  ) WITHOUT ROWID;

  -- Reads only their reader sees; never counted, listed or published to others.
  CREATE TABLE private_receipts (
    tenant TEXT NOT NULL,
    reader_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    read_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, reader_id, message_id)
  ) WITHOUT ROWID;
  CREATE INDEX private_receipts_by_message ON private_receipts (tenant, message_id);
  `,
  // 6: deletion and retention. A deleted message leaves a marker (its id is never tracked
  // again); messages, markers and horizon notes carry the tenant's retention as expires_at,
  // which the pruning job (sqlite-retention.ts) walks in bounded chunks; the change log is
  // searchable by message so that a deletion removes the message's entries.
  `
  ALTER TABLE messages ADD COLUMN expires_at INTEGER;
  CREATE INDEX messages_by_expiry ON messages (expires_at) WHERE expires_at IS NOT NULL;

  CREATE TABLE deleted_messages (
    tenant TEXT NOT NULL,
    message_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    conversation_type TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    receiver_id TEXT NOT NULL,
    deleted_at INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (tenant, message_id)
  ) WITHOUT ROWID;
  CREATE INDEX deleted_messages_by_expiry ON deleted_messages (expires_at)
    WHERE expires_at IS NOT NULL;

  ALTER TABLE horizon_sets ADD COLUMN expires_at INTEGER;
  CREATE INDEX horizon_sets_by_expiry ON horizon_sets (expires_at) WHERE expires_at IS NOT NULL;

  CREATE INDEX change_log_by_message
    ON change_log (tenant, json_extract(payload, '$.receipt.message.messageId'));
  `,
];
