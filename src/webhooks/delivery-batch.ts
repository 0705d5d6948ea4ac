import { webhookBody, webhookId } from "../api/webhook-payload.js";
import type { EndpointKey, FailedDelivery } from "../store/webhook-state.js";
import type { TakenEvents } from "./delivery-window.js";

/** One POST's worth, across its attempts: new events from the window, or a replay (no events). */
export interface Batch extends TakenEvents {
  readonly id: string;
  readonly body: string;
  readonly replayOf?: FailedDelivery;
  firstAttemptAt: number;
  attempts: number;
  notBefore: number;
  lastError: string;
}

/** New events: the same events make the same webhook-id and body, on every instance. */
export function batchOf(key: EndpointKey, taken: TakenEvents, now: number): Batch {
  return {
    ...taken,
    id: webhookId(key.endpoint, taken.events),
    body: webhookBody(key.tenant, taken.events),
    ...firstAttempt(now),
  };
}

/** A failed delivery marked for replay: its stored body under its webhook-id, due at once. */
export function replayOf(failed: FailedDelivery, now: number): Batch {
  return {
    id: failed.webhookId,
    events: [],
    entries: [],
    conversations: [],
    body: failed.body,
    replayOf: failed,
    ...firstAttempt(now),
  };
}

const firstAttempt = (now: number) => ({
  firstAttemptAt: now,
  attempts: 0,
  notBefore: now,
  lastError: "",
});
