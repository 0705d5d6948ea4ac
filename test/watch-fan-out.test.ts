import { describe, expect, it } from "vitest";
import type { PositionedChange } from "../src/domain/model.js";
import { Subscription, TenantFanOut } from "../src/domain/watch-fan-out.js";
import type { ChangeFeed } from "../src/store/change-feed.js";

/** A feed that hands the test its one listener. */
function fakeFeed() {
  const taps: {
    listener?: (change: PositionedChange) => void;
    interrupted?: (error: Error) => void;
    closed: boolean;
  } = { closed: false };
  const feed = {
    listen(
      _tenant: string,
      listener: (change: PositionedChange) => void,
      interrupted?: (error: Error) => void,
    ) {
      taps.listener = listener;
      taps.interrupted = interrupted;
      return () => {
        taps.closed = true;
      };
    },
  } as unknown as ChangeFeed;
  return { feed, taps };
}

/** A conversation filter that counts how often it was asked. */
class CountedSet extends Set<string> {
  static asked = 0;
  override has(value: string): boolean {
    CountedSet.asked += 1;
    return super.has(value);
  }
}

const horizon = (position: string, conversationId: string): PositionedChange => ({
  position,
  change: { kind: "horizon", conversationId, readerId: "r", readUpTo: 1 },
});

describe("the watch fan-out of one tenant", () => {
  it("offers a change to the streams of its conversation only, not to every stream", () => {
    const { feed, taps } = fakeFeed();
    const fanOut = new TenantFanOut(feed, "t", () => {});
    const streams = Array.from({ length: 1_000 }, (_, i) => {
      const subscription = new Subscription(
        {
          conversations: new CountedSet([`c${i % 100}`]),
          senderId: undefined,
          readerId: undefined,
        },
        10,
      );
      fanOut.add(subscription);
      return subscription;
    });
    CountedSet.asked = 0;
    taps.listener?.(horizon("7", "c3"));
    expect(CountedSet.asked).toBe(10);
    expect(streams.filter((s) => s.shift() !== undefined)).toHaveLength(10);
    expect(fanOut.latest).toBe("7");
  });

  it("gives sender watches and watches of everything what they match, each change once", () => {
    const { feed, taps } = fakeFeed();
    const fanOut = new TenantFanOut(feed, "t", () => {});
    const everything = new Subscription(
      { conversations: undefined, senderId: undefined, readerId: undefined },
      10,
    );
    const both = new Subscription(
      { conversations: new Set(["c1", "c2"]), senderId: undefined, readerId: undefined },
      10,
    );
    const sender = new Subscription(
      { conversations: undefined, senderId: "s", readerId: undefined },
      10,
    );
    for (const s of [everything, both, sender]) fanOut.add(s);
    taps.listener?.(horizon("1", "c1"));
    taps.listener?.(horizon("2", "c2"));
    expect(
      [everything.shift(), everything.shift(), everything.shift()].map((c) => c?.position),
    ).toEqual(["1", "2", undefined]);
    expect([both.shift(), both.shift(), both.shift()].map((c) => c?.position)).toEqual([
      "1",
      "2",
      undefined,
    ]);
    // Horizon changes have no sender.
    expect(sender.shift()).toBeUndefined();
  });

  it("stops offering to a stream once it left, and interrupts every stream when the feed stops", () => {
    const { feed, taps } = fakeFeed();
    let interruptedFanOut: TenantFanOut | undefined;
    const fanOut = new TenantFanOut(feed, "t", (f) => {
      interruptedFanOut = f;
    });
    const gone = new Subscription(
      { conversations: new Set(["c"]), senderId: undefined, readerId: undefined },
      10,
    );
    const staying = new Subscription(
      { conversations: undefined, senderId: "s", readerId: undefined },
      10,
    );
    fanOut.add(gone);
    fanOut.add(staying);
    fanOut.delete(gone);
    expect(fanOut.size).toBe(1);
    taps.listener?.(horizon("1", "c"));
    expect(gone.shift()).toBeUndefined();
    taps.interrupted?.(new Error("feed down"));
    expect(interruptedFanOut).toBe(fanOut);
    expect(staying.interruption?.message).toBe("feed down");
    expect(gone.interruption).toBeUndefined();
    fanOut.close();
    expect(taps.closed).toBe(true);
  });
});
