/**
 * The benchmark's data set, derived from a few numbers so that every process
 * (the loader, the load workers, the ceiling loops) enumerates the same rows
 * without passing them around. Member 0 of each group sends every message;
 * members 1..members-1 read.
 */
export interface Workload {
  /** Ids start with this, so that runs never see each other's data. */
  readonly prefix: string;
  readonly groups: number;
  readonly members: number;
  readonly messagesPerGroup: number;
  /** Message ids per SendReceipts call. */
  readonly idsPerCall: number;
  /** sent_at of every message; memberships start an hour before. */
  readonly sentAt: number;
}

export const groupId = (w: Workload, g: number): string => `${w.prefix}g${g}`;
export const userId = (w: Workload, g: number, m: number): string => `${w.prefix}g${g}u${m}`;
export const messageId = (w: Workload, g: number, k: number): string => `${w.prefix}g${g}m${k}`;

export interface ReceiptCall {
  readonly group: number;
  readonly reader: number;
  readonly conversationId: string;
  readonly readerId: string;
  readonly messageIds: string[];
}

/** Every SendReceipts call the workload holds: each (reader, message) pair once. */
export function callCount(w: Workload): number {
  return w.groups * (w.members - 1) * Math.floor(w.messagesPerGroup / w.idsPerCall);
}

/**
 * Call i, spread so that consecutive calls hit different groups and, within a
 * group, different readers of the same messages (hot message partitions).
 */
export function receiptCall(w: Workload, i: number): ReceiptCall {
  const group = i % w.groups;
  const rest = Math.floor(i / w.groups);
  const reader = 1 + (rest % (w.members - 1));
  const chunk = Math.floor(rest / (w.members - 1));
  const messageIds: string[] = [];
  for (let k = chunk * w.idsPerCall; k < (chunk + 1) * w.idsPerCall; k++) {
    messageIds.push(messageId(w, group, k));
  }
  return {
    group,
    reader,
    conversationId: groupId(w, group),
    readerId: userId(w, group, reader),
    messageIds,
  };
}
