/**
 * Runs the tasks of one key one after another, and tasks of different keys
 * concurrently. Keys with nothing queued hold no memory.
 */
export class SerialPerKey {
  /** The last task queued per key; it settles after every earlier one. */
  readonly #tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key);
    const result = previous === undefined ? task() : previous.then(task, task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return result;
  }
}
