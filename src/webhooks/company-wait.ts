/** How long a batch that is not full waits for company at most, unless an endpoint says. */
export const defaultLingerMs = 100;

/** A batch that is not full waits: how DeliveryWindow.take is to hold it, and until when. */
export interface CompanyWait {
  /** For `DeliveryWindow.take`: a batch not full is not taken while its oldest event is later. */
  readonly unlessSince: number;
  /** When the held events may go without company, given when the oldest of them happened. */
  until(oldestAt: number): number;
}

/**
 * Whether a batch that is not full waits for company, lingerMs at most: one POST then carries
 * several calls' receipts, and a POST costs the service far more than an event does
 * (docs/PERFORMANCE.md). While a POST is out, until its oldest event waited that long (a
 * receiver that hangs holds the others that long); right after one, until lingerMs after it
 * started, so that under load an endpoint gets a POST per lingerMs or per full batch rather
 * than one per burst of calls. After a quiet lingerMs, an event goes at once (undefined).
 */
export function companyWait(
  now: number,
  state: { readonly posting: boolean; readonly lastPostAt: number; readonly lingerMs: number },
): CompanyWait | undefined {
  const { posting, lastPostAt, lingerMs } = state;
  if (posting) return { unlessSince: now - lingerMs, until: (oldestAt) => oldestAt + lingerMs };
  // A wall clock stepped back never holds events longer than lingerMs.
  const sinceLastPost = now - lastPostAt;
  if (sinceLastPost < 0 || sinceLastPost >= lingerMs) return undefined;
  return { unlessSince: Number.NEGATIVE_INFINITY, until: () => lastPostAt + lingerMs };
}
