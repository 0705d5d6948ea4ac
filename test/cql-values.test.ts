import { types } from "cassandra-driver";
import { describe, expect, it } from "vitest";
import {
  afterEveryWriteMicros,
  optionalNumber,
  toNumber,
  ttlSeconds,
  WriteClock,
} from "../src/store/cassandra/cql-values.js";

describe("the Cassandra store's write clock", () => {
  it("gives strictly increasing microseconds, even when the wall clock stands still or goes back", () => {
    let now = 1_000;
    const clock = new WriteClock(() => now);
    const first = clock.nextMicros();
    const second = clock.nextMicros();
    now = 900;
    const third = clock.nextMicros();
    now = 2_000;
    const fourth = clock.nextMicros();
    expect(first).toBe(1_000_000);
    expect(second).toBe(1_000_001);
    expect(third).toBe(1_000_002);
    expect(fourth).toBe(2_000_000);
  });
});

describe("bigint column values", () => {
  it("read as numbers in either encoding of the driver", () => {
    expect(toNumber(types.Long.fromNumber(1_700_000_000_123))).toBe(1_700_000_000_123);
    expect(toNumber(1_700_000_000_123n)).toBe(1_700_000_000_123);
    expect(toNumber(42)).toBe(42);
  });

  it("refuse anything else, and read an unset column as undefined", () => {
    expect(() => toNumber("42")).toThrow(TypeError);
    expect(optionalNumber(null)).toBeUndefined();
    expect(optionalNumber(undefined)).toBeUndefined();
  });
});

describe("retention TTLs and deletion tombstones", () => {
  it("gives a row the whole seconds left to its message's expiry, at least 1, and none without one", () => {
    expect(ttlSeconds(undefined, 5_000)).toBe(0);
    expect(ttlSeconds(5_000 + 3_600_000, 5_000)).toBe(3_600);
    expect(ttlSeconds(5_000 + 1_001, 5_000)).toBe(2); // never expires before its message
    expect(ttlSeconds(5_000, 5_000)).toBe(1); // 0 would mean "forever"
    expect(ttlSeconds(1_000, 5_000)).toBe(1);
  });

  it("writes deletion tombstones later than any write time of the store's clock for a century", () => {
    const clock = new WriteClock(() => Date.UTC(2100, 0, 1));
    expect(afterEveryWriteMicros).toBeGreaterThan(clock.nextMicros());
    expect(Number.isSafeInteger(afterEveryWriteMicros)).toBe(true);
  });
});
