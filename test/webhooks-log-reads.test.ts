import { describe, expect, it } from "vitest";
import { SqliteChangeFeed } from "../src/store/sqlite/sqlite-change-feed.js";
import { deliveryReading, horizon } from "./support/endpoint-delivery-fixture.js";

/** How often an endpoint's delivery reads the change log: once per publish, not once per wake. */

describe("webhook delivery's reads of the change log", () => {
  it("reads the log once per publish while it keeps up, whatever else wakes it", async () => {
    const { feed, receiver, reads } = await deliveryReading({ pollMs: 60_000 });
    await receiver.until(() => reads() >= 1);
    const before = reads();
    for (let n = 1; n <= 10; n++) {
      await feed.publish("acme", [horizon(n)]);
      await receiver.until(() => receiver.events().length === n);
    }
    // Each publish rang once; the POSTs that completed and the lingers that ended woke the
    // loop too, and those needed no read.
    expect(reads() - before).toBe(10);
    expect(receiver.events().map((e) => e.data.conversationId)).toEqual(
      Array.from({ length: 10 }, (_, i) => `c${i + 1}`),
    );
  });

  it("reads on at once after a full read, without waiting for the poll", async () => {
    const { feed, receiver } = await deliveryReading({ pollMs: 60_000 });
    // One ring for 2,500 changes: reads of 1,000, 1,000 and 500, one after the other.
    await feed.publish(
      "acme",
      Array.from({ length: 2_500 }, (_, i) => horizon(i)),
    );
    await receiver.until(() => receiver.events().length === 2_500, 10_000);
  });

  it("finds by its poll a change whose ring it never heard", async () => {
    const { db, writes, receiver, reads } = await deliveryReading({ pollMs: 200 });
    await receiver.until(() => reads() >= 1);
    // Appended through another feed on the same database, as by another process: no ring here.
    const elsewhere = new SqliteChangeFeed(db, writes, { retentionMs: 3_600_000 });
    await elsewhere.publish("acme", [horizon(1)]);
    await receiver.until(() => receiver.events().length === 1, 2_000);
    const idle = reads();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(reads() - idle).toBeGreaterThanOrEqual(3);
    expect(reads() - idle).toBeLessThanOrEqual(6);
  });
});
