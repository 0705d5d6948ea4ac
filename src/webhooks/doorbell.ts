/**
 * Wakes a loop that sleeps between rounds of work. A ring while the loop is busy is kept, so
 * the next sleep returns at once: a change that arrives during a round is never left waiting
 * for the poll interval.
 */
export class Doorbell {
  #wake: (() => void) | undefined;
  #rung = false;

  readonly ring = (): void => {
    this.#rung = true;
    this.#wake?.();
  };

  /** Waits `ms`, or less if rung (now or before) or `signal` is aborted. */
  async sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (this.#rung || signal.aborted) {
      this.#rung = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
    this.#rung = false;
  }
}
