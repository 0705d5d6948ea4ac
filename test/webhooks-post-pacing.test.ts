import { describe, expect, it } from "vitest";
import { deliveryReading, horizon } from "./support/endpoint-delivery-fixture.js";

/**
 * How an endpoint's events become POSTs: under load, one POST carries what arrived in about
 * lingerMs (100 ms by default), or a full batch, not one burst of calls each; after a quiet
 * spell, an event goes at once. A POST costs the service far more than an event
 * (docs/PERFORMANCE.md). The timing checks use a linger of 1 s, so that "at once" and "held"
 * stay far apart on a loaded machine.
 */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const lingerMs = 1_000;
const atOnce = 500;

describe("webhook delivery's POSTs", () => {
  it("gathers a steady trickle into few POSTs, even when the receiver answers at once", async () => {
    const { feed, receiver } = await deliveryReading({ pollMs: 60_000 });
    // 40 publishes of one event, 10 ms apart, with the default linger: the receiver answers
    // each POST well within 10 ms, so no POST is out when the next event arrives.
    for (let n = 1; n <= 40; n++) {
      await feed.publish("acme", [horizon(n)]);
      await sleep(10);
    }
    await receiver.until(() => receiver.events().length === 40, 5_000);
    // About 400 ms of events: the first POST at once, then about one per 100 ms.
    expect(receiver.received.length).toBeGreaterThanOrEqual(2);
    expect(receiver.received.length).toBeLessThanOrEqual(8);
    expect(receiver.events().map((e) => e.data.conversationId)).toEqual(
      Array.from({ length: 40 }, (_, i) => `c${i + 1}`),
    );
  });

  it("sends an event at once after a quiet spell, a full batch without waiting, and holds the rest", async () => {
    const { feed, receiver } = await deliveryReading({ pollMs: 60_000, batchSize: 5, lingerMs });
    let published = performance.now();
    await feed.publish("acme", [horizon(1)]);
    await receiver.until(() => receiver.events().length === 1, 2_000);
    expect(performance.now() - published).toBeLessThan(atOnce);
    // Right after that POST: a full batch (5 of 5) goes at once, the other 2 wait for company
    // until lingerMs after the last POST.
    published = performance.now();
    await feed.publish(
      "acme",
      Array.from({ length: 7 }, (_, i) => horizon(10 + i)),
    );
    await receiver.until(() => receiver.events().length === 6, 2_000);
    expect(performance.now() - published).toBeLessThan(atOnce);
    await receiver.until(() => receiver.events().length === 8, 3_000);
    expect(performance.now() - published).toBeGreaterThanOrEqual(lingerMs - 50);
    expect(receiver.received.map((post) => post.payload.eventCount)).toEqual([1, 5, 2]);
    // After a quiet lingerMs, an event goes at once again.
    await sleep(lingerMs + 100);
    published = performance.now();
    await feed.publish("acme", [horizon(20)]);
    await receiver.until(() => receiver.events().length === 9, 2_000);
    expect(performance.now() - published).toBeLessThan(atOnce);
  });

  it("does not hold events for longer when the wall clock steps back", async () => {
    let stepBack = 0;
    const { feed, receiver } = await deliveryReading({
      pollMs: 60_000,
      lingerMs,
      clock: () => Date.now() - stepBack,
    });
    await feed.publish("acme", [horizon(1)]);
    await receiver.until(() => receiver.events().length === 1, 2_000);
    await sleep(lingerMs + 100);
    // An hour back (an NTP step) after a quiet lingerMs: the next event still goes at once,
    // not an hour later.
    stepBack = 3_600_000;
    const published = performance.now();
    await feed.publish("acme", [horizon(2)]);
    await receiver.until(() => receiver.events().length === 2, 3_000);
    expect(performance.now() - published).toBeLessThan(atOnce);
  });
});
