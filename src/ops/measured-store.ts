import type { ChangeFeed } from "../store/change-feed.js";
import type { ReceiptStore } from "../store/receipt-store.js";
import type { Metrics } from "./metrics.js";

type Method = (...args: unknown[]) => unknown;

/**
 * Wraps an object so that each call of the named methods is timed into
 * `receipts_store_operation_seconds{operation, outcome}`. A proxy rather than
 * a hand-written class, so that methods added to the port later are measured
 * too. Every other property passes through untouched.
 */
function measured<T extends object>(
  target: T,
  metrics: Metrics,
  prefix: string,
  methods: ReadonlySet<string> | "all",
): T {
  const wrapped = new Map<string, Method>();
  return new Proxy(target, {
    get(object, property) {
      const value: unknown = Reflect.get(object, property, object);
      if (typeof value !== "function" || typeof property !== "string") return value;
      if (methods !== "all" && !methods.has(property)) return value.bind(object);
      let wrapper = wrapped.get(property);
      if (wrapper === undefined) {
        const operation = prefix + property;
        const method = value as Method;
        // Label objects built once per operation (prom-client still hashes them per observation).
        const ok = metrics.storeSeconds.labels({ operation, outcome: "ok" });
        const failed = metrics.storeSeconds.labels({ operation, outcome: "error" });
        wrapper = (...args: unknown[]) => {
          const startedAt = performance.now();
          const seconds = () => (performance.now() - startedAt) / 1000;
          let result: unknown;
          try {
            result = method.apply(object, args);
          } catch (error) {
            failed.observe(seconds());
            throw error;
          }
          if (result instanceof Promise) {
            return result.then(
              (value: unknown) => {
                ok.observe(seconds());
                return value;
              },
              (error: unknown) => {
                failed.observe(seconds());
                throw error;
              },
            );
          }
          ok.observe(seconds());
          return result;
        };
        wrapped.set(property, wrapper);
      }
      return wrapper;
    },
  });
}

/** The store with every operation timed. */
export function measureStore(store: ReceiptStore, metrics: Metrics): ReceiptStore {
  return measured(store, metrics, "", "all");
}

/** The change feed with its round trips timed as `feed.publish`, `feed.readAfter`, `feed.head`. */
export function measureFeed(feed: ChangeFeed, metrics: Metrics): ChangeFeed {
  // listen, ring, comparePositions and isPosition are in-process and hot: left untimed.
  return measured(feed, metrics, "feed.", new Set(["publish", "readAfter", "head"]));
}
