/**
 * Starts two things at once and keeps whichever started, so that an afterAll can stop it even
 * when the other failed (a plain Promise.all loses the one that started: its processes stay).
 */
export async function bothStarted<A, B>(
  first: Promise<A>,
  second: Promise<B>,
  keep: (first: A | undefined, second: B | undefined) => void,
): Promise<void> {
  const [a, b] = await Promise.allSettled([first, second]);
  keep(
    a.status === "fulfilled" ? a.value : undefined,
    b.status === "fulfilled" ? b.value : undefined,
  );
  if (a.status === "rejected") throw a.reason;
  if (b.status === "rejected") throw b.reason;
}
