import { describe, expect, it } from "vitest";
import {
  type PartitionWrite,
  PartitionWriteCoalescer,
} from "../src/store/cassandra/partition-write-coalescer.js";

/** A writer whose sends stay in flight until the test settles them. */
function heldWriter() {
  const sends: { writes: string[]; settle: (error?: Error) => void }[] = [];
  const send = (writes: readonly PartitionWrite[]) =>
    new Promise<void>((resolve, reject) => {
      sends.push({
        writes: writes.map((w) => w.cql),
        settle: (error) => (error ? reject(error) : resolve()),
      });
    });
  return { sends, send };
}

const row = (cql: string): PartitionWrite => ({ cql, params: [] });
const settled = () => new Promise((resolve) => setImmediate(resolve));

describe("PartitionWriteCoalescer", () => {
  it("sends a write at once, and the writes that arrive meanwhile together after it", async () => {
    const { sends, send } = heldWriter();
    const coalescer = new PartitionWriteCoalescer(send, { maxBatch: 10 });
    const first = coalescer.write("p", row("a"));
    const later = [coalescer.write("p", row("b")), coalescer.write("p", row("c"))];
    expect(sends.map((s) => s.writes)).toEqual([["a"]]);
    sends[0]?.settle();
    await first;
    await settled();
    expect(sends.map((s) => s.writes)).toEqual([["a"], ["b", "c"]]);
    sends[1]?.settle();
    await Promise.all(later);
  });

  it("never makes one partition wait for another", () => {
    const { sends, send } = heldWriter();
    const coalescer = new PartitionWriteCoalescer(send, { maxBatch: 10 });
    void coalescer.write("p", row("a"));
    void coalescer.write("q", row("b"));
    expect(sends.map((s) => s.writes)).toEqual([["a"], ["b"]]);
  });

  it("splits what waits into batches of at most maxBatch", async () => {
    const { sends, send } = heldWriter();
    const coalescer = new PartitionWriteCoalescer(send, { maxBatch: 2 });
    const all = ["a", "b", "c", "d", "e"].map((cql) => coalescer.write("p", row(cql)));
    for (let i = 0; i < 3; i++) {
      sends[i]?.settle();
      await settled();
    }
    await Promise.all(all);
    expect(sends.map((s) => s.writes)).toEqual([["a"], ["b", "c"], ["d", "e"]]);
  });

  it("fails the callers of a failed batch only, and goes on with the next", async () => {
    const { sends, send } = heldWriter();
    const coalescer = new PartitionWriteCoalescer(send, { maxBatch: 10 });
    const first = coalescer.write("p", row("a"));
    const second = coalescer.write("p", row("b"));
    const third = coalescer.write("p", row("c"));
    sends[0]?.settle(new Error("timed out"));
    await expect(first).rejects.toThrow("timed out");
    await settled();
    sends[1]?.settle();
    await expect(Promise.all([second, third])).resolves.toEqual([undefined, undefined]);
    // Idle again: the next write goes out at once, alone.
    void coalescer.write("p", row("d"));
    expect(sends.at(-1)?.writes).toEqual(["d"]);
  });
});
