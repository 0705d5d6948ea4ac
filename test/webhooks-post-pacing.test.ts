import { describe, expect, it } from "vitest";
import { deliveryReading, horizon } from "./support/endpoint-delivery-fixture.js";

/**
 * How an endpoint's events become POSTs: under load, one POST carries what arrived in about
 * 100 ms (or a full batch), not one burst of calls each; after a quiet spell, an event goes at
 * once. A POST costs the service far more than an event (docs/PERFORMANCE.md).
 */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("webhook delivery's POSTs", () => {
  it("gathers a steady trickle into few POSTs, even when the receiver answers at once", async () => {
    const { feed, receiver } = await deliveryReading({ pollMs: 60_000 });
    // 40 publishes of one event, 10 ms apart: the receiver answers each POST well within
    // that, so no POST is out when the next event arrives.
    for (let n = 1; n <= 40; n++) {
      await feed.publish("acme", [horizon(n)]);
      await sleep(10);
    }
    await receiver.until(() => receiver.events().length === 40, 5_000);
    // About 400 ms of events: 1 POST at once, then one per 100 ms, give or take a timer.
    expect(receiver.received.length).toBeGreaterThanOrEqual(3);
    expect(receiver.received.length).toBeLessThanOrEqual(8);
    expect(receiver.events().map((e) => e.data.conversationId)).toEqual(
      Array.from({ length: 40 }, (_, i) => `c${i + 1}`),
    );
  });

  it("sends an event at once after a quiet spell, and a full batch without waiting", async () => {
    const { feed, receiver } = await deliveryReading({ pollMs: 60_000, batchSize: 5 });
    await sleep(150);
    let published = performance.now();
    await feed.publish("acme", [horizon(1)]);
    await receiver.until(() => receiver.events().length === 1, 2_000);
    expect(performance.now() - published).toBeLessThan(60);
    // Right after that POST: a full batch (5 of 5) goes at once, the rest (2) waits for company.
    published = performance.now();
    await feed.publish(
      "acme",
      Array.from({ length: 7 }, (_, i) => horizon(10 + i)),
    );
    await receiver.until(() => receiver.events().length === 6, 2_000);
    expect(performance.now() - published).toBeLessThan(60);
    await receiver.until(() => receiver.events().length === 8, 2_000);
    expect(receiver.received.map((post) => post.payload.eventCount)).toEqual([1, 5, 2]);
  });

  it("does not hold events for longer when the wall clock steps back", async () => {
    let stepBack = 0;
    const { feed, receiver } = await deliveryReading({
      pollMs: 60_000,
      clock: () => Date.now() - stepBack,
    });
    await feed.publish("acme", [horizon(1)]);
    await receiver.until(() => receiver.events().length === 1, 2_000);
    // An hour back, right after that POST (an NTP step): the next event still goes at once.
    stepBack = 3_600_000;
    await sleep(150);
    const published = performance.now();
    await feed.publish("acme", [horizon(2)]);
    await receiver.until(() => receiver.events().length === 2, 2_000);
    expect(performance.now() - published).toBeLessThan(60);
  });
});
