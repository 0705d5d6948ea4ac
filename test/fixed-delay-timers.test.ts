import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FixedDelayTimers } from "../src/domain/fixed-delay-timers.js";

describe("timers of one fixed delay, served by one Node timer", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "queueMicrotask", "performance"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("fires each expiry its delay after its own start, in start order, never before", () => {
    const timers = new FixedDelayTimers(1_000);
    const fired: string[] = [];
    timers.start(() => fired.push("first"));
    vi.advanceTimersByTime(400);
    timers.start(() => fired.push("second"));
    vi.advanceTimersByTime(599);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(["first"]);
    vi.advanceTimersByTime(399);
    expect(fired).toEqual(["first"]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(["first", "second"]);
  });

  it("never fires a cancelled expiry, and keeps the later ones", () => {
    const timers = new FixedDelayTimers(100);
    const fired: string[] = [];
    const first = timers.start(() => fired.push("first"));
    vi.advanceTimersByTime(50);
    timers.start(() => fired.push("second"));
    first.cancel();
    first.cancel();
    vi.advanceTimersByTime(100);
    expect(fired).toEqual(["second"]);
  });

  it("fires the other expiries of a turn when one throws, and rethrows it apart", () => {
    const timers = new FixedDelayTimers(10);
    const fired: string[] = [];
    timers.start(() => {
      throw new Error("broken expiry");
    });
    timers.start(() => fired.push("after the broken one"));
    expect(() => vi.advanceTimersByTime(10)).toThrow("broken expiry");
    expect(fired).toEqual(["after the broken one"]);
  });

  it("starts again after every pending expiry fired", () => {
    const timers = new FixedDelayTimers(10);
    const fired: number[] = [];
    timers.start(() => fired.push(1));
    vi.advanceTimersByTime(10);
    timers.start(() => fired.push(2));
    vi.advanceTimersByTime(10);
    expect(fired).toEqual([1, 2]);
  });
});
