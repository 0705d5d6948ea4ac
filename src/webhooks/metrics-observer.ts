import type { WebhookEvent } from "../api/webhook-payload.js";
import type { Metrics } from "../ops/metrics.js";
import type { EndpointKey } from "../store/webhook-state.js";
import type { DeliveryObserver } from "./endpoint-delivery.js";

/** Webhook delivery as Prometheus series, labelled by tenant and endpoint. */
export function metricsObserver(metrics: Metrics): DeliveryObserver {
  const labels = (key: EndpointKey) => ({ tenant: key.tenant, endpoint: key.endpoint });
  return {
    delivered(key, events: readonly WebhookEvent[], now) {
      metrics.webhookEvents.inc({ ...labels(key), result: "delivered" }, events.length);
      for (const event of events) {
        if (event.type === "receipt.read") {
          metrics.webhookDeliverySeconds.observe(Math.max(0, now - event.occurredAt) / 1000);
        }
      }
    },
    retried: (key) => metrics.webhookRetries.inc(labels(key)),
    failed: (key, events) =>
      metrics.webhookEvents.inc({ ...labels(key), result: "failed" }, events),
    disabled: (key, disabled) => metrics.webhookDisabled.set(labels(key), disabled ? 1 : 0),
    failing: (key, failing) => metrics.webhookFailing.set(labels(key), failing ? 1 : 0),
    lag: (key, seconds) => metrics.webhookLagSeconds.set(labels(key), seconds),
  };
}
