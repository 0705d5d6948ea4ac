import type { CqlSession, StatementOptions } from "./cql-session.js";

/** What the others know of a writer of the outbox (table outbox_writers, schema 9). */
export interface OutboxWriter {
  readonly writer: string;
  /** When it last said it sweeps its own entries. */
  readonly heartbeatAt: number;
  /** Its oldest entry not yet cleared at that heartbeat (no earlier entry of it is pending). */
  readonly oldestAt: number;
  /** The heartbeat after which someone found every entry of it cleared, if anyone did. */
  readonly sweptTo: number | undefined;
}

const options: StatementOptions = { idempotent: true };
/** Every writer is in one partition: a deployment has a few rows a day. */
const scope = 0;

/** The rows of outbox_writers: heartbeats written, writers listed, dead ones marked swept. */
export class CassandraOutboxWriters {
  readonly #session: CqlSession;
  readonly #cql: ReturnType<typeof statements>;

  constructor(session: CqlSession, keyspace: string) {
    this.#session = session;
    this.#cql = statements(keyspace);
  }

  async beat(writer: string, heartbeatAt: number, oldestAt: number): Promise<void> {
    await this.#session.execute(
      this.#cql.beat,
      [new Date(heartbeatAt), new Date(oldestAt), scope, writer],
      options,
    );
  }

  /** Its oldest entry not yet cleared, when it clears without sweeping (no heartbeat). */
  async noteOldest(writer: string, oldestAt: number): Promise<void> {
    await this.#session.execute(this.#cql.noteOldest, [new Date(oldestAt), scope, writer], options);
  }

  async list(): Promise<OutboxWriter[]> {
    const result = await this.#session.execute(this.#cql.list, [scope], options);
    return result.rows.flatMap((row) => {
      const heartbeat = row.get("heartbeat_at") as Date | null;
      if (heartbeat === null) return []; // only a swept_to left: its heartbeat expired
      const swept = row.get("swept_to") as Date | null;
      return [
        {
          writer: row.get("writer") as string,
          heartbeatAt: heartbeat.getTime(),
          oldestAt: (row.get("oldest_at") as Date | null)?.getTime() ?? 0,
          sweptTo: swept?.getTime(),
        },
      ];
    });
  }

  /** Its own column, never the writer's: a writer that comes back beats past it. */
  async markSwept(writer: string, heartbeatAt: number): Promise<void> {
    await this.#session.execute(
      this.#cql.markSwept,
      [new Date(heartbeatAt), scope, writer],
      options,
    );
  }
}

function statements(keyspace: string) {
  const table = `${keyspace}.outbox_writers`;
  return {
    beat: `UPDATE ${table} SET heartbeat_at = ?, oldest_at = ? WHERE scope = ? AND writer = ?`,
    noteOldest: `UPDATE ${table} SET oldest_at = ? WHERE scope = ? AND writer = ?`,
    list: `SELECT writer, heartbeat_at, oldest_at, swept_to FROM ${table} WHERE scope = ?`,
    markSwept: `UPDATE ${table} SET swept_to = ? WHERE scope = ? AND writer = ?`,
  };
}
