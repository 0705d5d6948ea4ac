/**
 * Runs `work` over `items` with at most `limit` calls in flight, keeping the
 * order of results. After a failure no new call starts, and the first failure
 * is thrown only once the calls in flight have settled.
 */
export async function mapConcurrently<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        results[index] = await work(items[index] as T, index);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const outcomes = await Promise.allSettled(
    Array.from({ length: Math.min(limit, items.length) }, worker),
  );
  const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
  if (failure !== undefined) throw failure.reason;
  return results;
}
