import type { Params } from "./cql-session.js";

export interface PartitionWrite {
  readonly cql: string;
  readonly params: Params;
}

/** Sends the writes of one partition: one statement alone, several as one unlogged batch. */
export type PartitionWriter = (writes: readonly PartitionWrite[]) => Promise<void>;

interface Waiting {
  readonly write: PartitionWrite;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Coalesces writes per partition without adding delay: a write to a
 * partition with nothing in flight goes out at once; writes that arrive
 * while one is in flight wait for it and then go out together, as one
 * single-partition batch (atomic, and one mutation for Cassandra instead of
 * one per row). Under light load every write is sent alone; the hotter a
 * partition (the readers of a message that a whole group reads at once), the
 * larger its batches and the fewer its requests.
 *
 * Each caller learns the outcome of the batch its write went out in.
 */
export class PartitionWriteCoalescer {
  readonly #send: PartitionWriter;
  readonly #maxBatch: number;
  /** Partitions with a write in flight, and what waits behind it. */
  readonly #waiting = new Map<string, Waiting[]>();

  constructor(send: PartitionWriter, options: { readonly maxBatch: number }) {
    this.#send = send;
    this.#maxBatch = options.maxBatch;
  }

  write(partition: string, write: PartitionWrite): Promise<void> {
    return new Promise((resolve, reject) => {
      const entry = { write, resolve, reject };
      const queue = this.#waiting.get(partition);
      if (queue !== undefined) {
        queue.push(entry);
        return;
      }
      this.#waiting.set(partition, []);
      void this.#drain(partition, [entry]);
    });
  }

  async #drain(partition: string, first: Waiting[]): Promise<void> {
    let batch = first;
    while (batch.length > 0) {
      try {
        await this.#send(batch.map((w) => w.write));
        for (const w of batch) w.resolve();
      } catch (error) {
        for (const w of batch) w.reject(error);
      }
      const queue = this.#waiting.get(partition) ?? [];
      batch = queue.splice(0, this.#maxBatch);
      if (batch.length === 0) this.#waiting.delete(partition);
    }
  }
}
