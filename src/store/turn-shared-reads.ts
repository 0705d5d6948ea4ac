/**
 * One read per key for all the callers of one event-loop turn. The read is
 * sent once the turn's I/O has been handled (setImmediate), so every caller
 * that shares it asked before it was sent and sees whatever was written
 * before it asked; a caller of a later turn never joins a read already sent.
 */
export class TurnSharedReads<T> {
  readonly #pending = new Map<string, Promise<T>>();

  read(key: string, read: () => Promise<T>): Promise<T> {
    let pending = this.#pending.get(key);
    if (pending === undefined) {
      pending = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        this.#pending.delete(key);
        return read();
      });
      this.#pending.set(key, pending);
    }
    return pending;
  }
}
