/** How a load process talks to the benchmark that started it (IPC over the `fork` channel). */
export const reply = (message: unknown): void => {
  // With a callback, a parent that already hung up is not an uncaught error.
  if (process.connected) process.send?.(message, undefined, {}, () => undefined);
};

/** Resolves at the benchmark's next message (`collect`, `stop`): stream tasks wait on it. */
export const nextMessage = (): Promise<void> =>
  new Promise((resolve) => process.once("message", () => resolve()));
