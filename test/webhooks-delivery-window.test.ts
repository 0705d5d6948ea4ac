import { describe, expect, it } from "vitest";
import type { WebhookEvent } from "../src/api/webhook-payload.js";
import { DeliveryWindow } from "../src/webhooks/delivery-window.js";

const event = (conversationId: string, n: number): WebhookEvent => ({
  id: `evt_${conversationId}_${n}`,
  type: "receipt.read",
  timestamp: new Date(n).toISOString(),
  occurredAt: n,
  tenant: "acme",
  conversationId,
  data: {},
});

describe("an endpoint's delivery window", () => {
  it("gives out one batch per conversation at a time, in log order, and moves the cursor past what is done only", () => {
    const window = new DeliveryWindow();
    window.add("1", 1, event("a", 1));
    window.add("2", 2, undefined); // not wanted by the endpoint: done at once
    window.add("3", 3, event("b", 3));
    window.add("4", 4, event("a", 4));
    const first = window.take(1);
    expect(first?.events.map((e) => e.id)).toEqual(["evt_a_1"]);
    // Conversation a has a batch out: its next event waits; b's goes.
    const second = window.take(10);
    expect(second?.events.map((e) => e.id)).toEqual(["evt_b_3"]);
    expect(window.take(10)).toBeUndefined();
    expect(window.advance()).toBeUndefined();
    window.finish(second as NonNullable<typeof second>);
    expect(window.advance()).toBeUndefined(); // 1 is not done yet
    window.finish(first as NonNullable<typeof first>);
    expect(window.advance()).toBe("3");
    expect(window.oldestAt()).toBe(4);
    expect(window.take(10)?.events.map((e) => e.id)).toEqual(["evt_a_4"]);
  });

  it("holds a batch that is not full while its oldest event is recent, never a full one or an old one", () => {
    const window = new DeliveryWindow();
    window.add("1", 100, event("a", 1));
    window.add("2", 105, event("b", 2));
    // Both events happened after 99: a batch of 2 out of 3 waits for company.
    expect(window.take(3, 99)).toBeUndefined();
    expect(window.oldestAvailableAt()).toBe(100);
    // A full batch goes whatever its age.
    expect(window.take(2, 99)?.events).toHaveLength(2);
    window.add("3", 110, event("c", 3));
    // The oldest (110) happened before 111: it has waited long enough.
    expect(window.take(3, 111)?.events.map((e) => e.id)).toEqual(["evt_c_3"]);
    expect(window.oldestAvailableAt()).toBeUndefined();
  });
});
