import type { ReceiptBatcher } from "./receipt-batcher.js";

/** The share of a message (or of the view, for tall ones) that must be on screen to count as seen. */
const seenRatio = 0.6;

/**
 * Notices when the user sees others' messages: an IntersectionObserver on
 * the scrolling timeline, counted only while the page is visible (a
 * background tab reads nothing). Seen messages go to the batcher, which sends
 * the receipts.
 */
export class ReadTracker {
  readonly #batcher: ReceiptBatcher;
  readonly #observer: IntersectionObserver;
  readonly #ids = new WeakMap<Element, string>();
  /** Messages on screen right now; they count once the page is visible. */
  readonly #onScreen = new Set<string>();

  constructor(root: HTMLElement, batcher: ReceiptBatcher) {
    this.#batcher = batcher;
    this.#observer = new IntersectionObserver((entries) => this.#onIntersect(entries), {
      root,
      threshold: [0, 0.25, seenRatio, 1],
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState !== "visible") return;
      for (const id of this.#onScreen) this.#batcher.add(id);
    });
  }

  /** Watches a message of someone else; once seen, the user's receipt is sent. */
  observe(element: Element, messageId: string): void {
    this.#ids.set(element, messageId);
    this.#observer.observe(element);
  }

  #onIntersect(entries: readonly IntersectionObserverEntry[]): void {
    for (const entry of entries) {
      const id = this.#ids.get(entry.target);
      if (id === undefined) continue;
      const viewHeight = entry.rootBounds?.height ?? Number.POSITIVE_INFINITY;
      const seen =
        entry.isIntersecting &&
        (entry.intersectionRatio >= seenRatio ||
          entry.intersectionRect.height >= viewHeight * seenRatio);
      if (!seen) {
        this.#onScreen.delete(id);
        continue;
      }
      this.#onScreen.add(id);
      if (document.visibilityState === "visible") this.#batcher.add(id);
    }
  }
}
