/** Bounds on one request; the floors, kept in one place. */
export const limits = {
  maxIdsPerReceiptCall: 100,
  maxIdsPerBatchGetReadMembers: 50,
  maxMessagesPerTrackCall: 1_000,
  maxUsersPerMembershipCall: 1_000,
  maxConversationsPerWatch: 100,
  defaultPageSize: 100,
  maxPageSize: 1_000,
  maxIdLength: 128,
  /** How far ahead of the server clock a read_up_to may be (clock skew). */
  maxFutureSkewMs: 5 * 60 * 1000,
} as const;
