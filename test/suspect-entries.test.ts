import { describe, expect, it } from "vitest";
import { SuspectEntries } from "../src/store/redis/suspect-entries.js";

/** Drops that the test answers by hand: each call waits for `settle(entry, ok)`. */
function handDrops() {
  const waiting = new Map<string, { resolve: () => void; reject: (e: Error) => void }[]>();
  const calls: string[] = [];
  return {
    calls,
    drop: (entry: string) =>
      new Promise<void>((resolve, reject) => {
        calls.push(entry);
        waiting.set(entry, [...(waiting.get(entry) ?? []), { resolve, reject }]);
      }),
    settle(entry: string, ok: boolean) {
      const next = waiting.get(entry)?.shift();
      if (next === undefined) throw new Error(`no drop of ${entry} waiting`);
      if (ok) next.resolve();
      else next.reject(new Error("Connection is closed."));
    },
  };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

/** For the cases that stay under the cap of marks: dropping everything is a defect there. */
const neverEverything = () => Promise.reject(new Error("dropped every entry under the cap"));

/** Suspects under the cap whose drops the test answers by hand, Redis always up. */
function handDroppedSuspects() {
  const drops = handDrops();
  const suspects = new SuspectEntries({
    drop: drops.drop,
    canTry: () => true,
    onFailure: () => {},
    dropEverything: neverEverything,
    forgetAfterMs: 60_000,
  });
  return { drops, suspects };
}

describe("the suspect entries of the read-count cache", () => {
  it("drops them together: one that Redis does not answer holds up no other", async () => {
    const { drops, suspects } = handDroppedSuspects();
    void suspects.mark(["on-dead-master", "on-live-master"]);
    await tick();
    expect(drops.calls).toEqual(["on-dead-master", "on-live-master"]);
    drops.settle("on-live-master", true);
    await tick();
    expect(suspects.has("on-live-master")).toBe(false);
    expect(suspects.has("on-dead-master")).toBe(true);
    suspects.close();
  });

  it("keeps a mark made while its drop was in flight, and drops it again", async () => {
    const { drops, suspects } = handDroppedSuspects();
    const first = suspects.mark(["m"]);
    await tick();
    // A reader is skipped after the drop was sent: the drop may have run before it was stored.
    void suspects.mark(["m"]);
    drops.settle("m", true);
    await tick();
    expect(suspects.has("m")).toBe(true);
    expect(drops.calls).toEqual(["m", "m"]);
    drops.settle("m", true);
    await first;
    expect(suspects.has("m")).toBe(false);
    suspects.close();
  });

  it("retries failed drops until Redis answers, and tries none while it is away", async () => {
    const drops = handDrops();
    let up = false;
    const failures: unknown[] = [];
    const suspects = new SuspectEntries({
      drop: drops.drop,
      canTry: () => up,
      onFailure: (error) => failures.push(error),
      dropEverything: neverEverything,
      forgetAfterMs: 60_000,
      retryMs: 10,
    });
    await suspects.mark(["m"]);
    expect(drops.calls).toEqual([]);
    up = true;
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(drops.calls).toEqual(["m"]);
    drops.settle("m", false);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(failures).toHaveLength(1);
    expect(drops.calls).toEqual(["m", "m"]);
    drops.settle("m", true);
    await tick();
    expect(suspects.has("m")).toBe(false);
    expect(suspects.size).toBe(0);
    suspects.close();
  });

  it("forgets a mark once every entry it could concern has expired, dropped or not", async () => {
    let now = 1_000;
    const suspects = new SuspectEntries({
      drop: () => Promise.reject(new Error("Connection is closed.")),
      canTry: () => false,
      onFailure: () => {},
      dropEverything: neverEverything,
      forgetAfterMs: 500,
      now: () => now,
    });
    await suspects.mark(["old"]);
    now += 300;
    await suspects.mark(["young"]);
    now += 250;
    expect(suspects.has("old")).toBe(false);
    expect(suspects.has("young")).toBe(true);
    await suspects.dropAll();
    expect(suspects.size).toBe(1);
    now += 300;
    await suspects.dropAll();
    expect(suspects.size).toBe(0);
    suspects.close();
  });

  it("past the cap of marks, holds every entry suspect until every entry is dropped", async () => {
    const drops = handDrops();
    let everythingDropped: (() => void) | undefined;
    let everythingAsked = 0;
    const suspects = new SuspectEntries({
      drop: drops.drop,
      dropEverything: () =>
        new Promise<void>((resolve) => {
          everythingAsked++;
          everythingDropped = resolve;
        }),
      canTry: () => true,
      onFailure: () => {},
      forgetAfterMs: 60_000,
      maxMarks: 2,
    });
    void suspects.mark(["a", "b"]);
    await tick();
    drops.settle("a", true);
    drops.settle("b", true);
    await tick();
    expect(suspects.size).toBe(0);
    // Three marks at once where two may be kept: memory stays bounded, and no entry is trusted.
    const overflow = suspects.mark(["c", "d", "e"]);
    await tick();
    expect(everythingAsked).toBe(1);
    expect(suspects.has("never-marked")).toBe(true);
    // A mark made while every entry is being dropped: the drop may have passed it already.
    void suspects.mark(["late"]);
    everythingDropped?.();
    await tick();
    expect(suspects.has("never-marked")).toBe(false);
    expect(suspects.has("c")).toBe(false);
    expect(suspects.has("late")).toBe(true);
    expect(drops.calls).toEqual(["a", "b", "late"]);
    drops.settle("late", true);
    await overflow;
    expect(suspects.has("late")).toBe(false);
    expect(everythingAsked).toBe(1);
    suspects.close();
  });
});
