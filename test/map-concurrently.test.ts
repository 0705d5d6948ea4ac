import { describe, expect, it } from "vitest";
import { chunk } from "../src/store/chunk.js";
import { mapConcurrently } from "../src/store/map-concurrently.js";

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("mapConcurrently", () => {
  it("keeps the order of results whatever order the calls finish in", async () => {
    const results = await mapConcurrently([30, 10, 20], 3, async (ms, i) => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return `${i}:${ms}`;
    });
    expect(results).toEqual(["0:30", "1:10", "2:20"]);
  });

  it("never has more than `limit` calls in flight", async () => {
    let inFlight = 0;
    let most = 0;
    await mapConcurrently(
      Array.from({ length: 20 }, (_, i) => i),
      4,
      async () => {
        inFlight++;
        most = Math.max(most, inFlight);
        await tick();
        inFlight--;
      },
    );
    expect(most).toBe(4);
  });

  it("starts nothing after a failure and throws it once the calls in flight settled", async () => {
    const started: number[] = [];
    let settled = 0;
    const outcome = mapConcurrently([0, 1, 2, 3, 4, 5], 2, async (i) => {
      started.push(i);
      await tick();
      if (i === 1) throw new Error("boom");
      await tick();
      settled++;
    });
    await expect(outcome).rejects.toThrow("boom");
    expect(started).toEqual([0, 1]);
    expect(settled).toBe(1);
  });
});

describe("chunk", () => {
  it("cuts a list into consecutive lists of at most `size`", () => {
    expect(chunk([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
    expect(chunk([], 3)).toEqual([]);
  });
});
