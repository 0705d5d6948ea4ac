import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ConversationType, ReadFilter } from "../../gen/receipts/v1/receipts_pb.js";
import { mapConcurrently } from "../../src/store/map-concurrently.js";
import { addMembers, type BenchContext } from "../bench-context.js";
import { type LatencySummary, ratio, round, summarize } from "../latency-stats.js";

export interface LargeGroupResult {
  readonly members: number;
  readonly setupSeconds: number;
  readonly trackMessages: {
    readonly large: LatencySummary;
    readonly small: LatencySummary;
    readonly p50Ratio: number;
    readonly p99Ratio: number;
  };
  readonly listReadMembers: {
    readonly pageSize: number;
    readonly unread: LatencySummary;
    readonly read: LatencySummary;
    readonly readers: number;
    /** Members of the group the pages were read from. */
    readonly groupMembers: number;
    /** What ListReadMembers answered for the 100,000-member group. */
    readonly largeGroupAnswer: string;
  };
  readonly floor: { readonly target: string; readonly met: boolean };
}

const members = 100_000;
const pageSize = 200;

/**
 * A group of 100,000 members beside one of 10: TrackMessages latency in each
 * (sequential calls, one message each, alternating), and ListReadMembers
 * pages of 200 walked through the large group's UNREAD and READ lists.
 */
export async function largeGroupScenario(context: BenchContext): Promise<LargeGroupResult> {
  const quick = context.mode === "quick";
  const large = `${context.runId}big`;
  const small = `${context.runId}small`;
  const user = (i: number) => `u${String(i).padStart(6, "0")}`;
  const joinedAt = Date.now() - 3_600_000;
  context.log(`large group: adding ${members} members`);
  const setup = performance.now();
  await addMembers(
    context,
    large,
    Array.from({ length: members }, (_, i) => user(i)),
    joinedAt,
  );
  await addMembers(
    context,
    small,
    Array.from({ length: 10 }, (_, i) => user(i)),
    joinedAt,
  );
  const setupSeconds = round((performance.now() - setup) / 1000, 1);

  const track = async (group: string, i: number) => {
    const at = performance.now();
    await context.receipts.trackMessages({
      messages: [
        {
          conversationId: group,
          conversationType: ConversationType.GROUP,
          messageId: `${group}-m${i}`,
          senderId: user(0),
          sentAt: timestampFromMs(Date.now() - 1_000),
        },
      ],
    });
    return performance.now() - at;
  };
  const rounds = quick ? 200 : 1_000;
  const largeMs: number[] = [];
  const smallMs: number[] = [];
  for (let i = 0; i < rounds; i++) {
    largeMs.push(await track(large, i));
    smallMs.push(await track(small, i));
  }

  // Member lists are served up to the tenant's maxGroupSizeForMemberLists (10,000 by
  // default, and in development mode): the large group's is refused, so pages are read
  // from a group of that size.
  let refusal = "";
  await context.receipts
    .listReadMembers({
      conversationId: large,
      messageId: `${large}-m0`,
      filter: ReadFilter.UNREAD,
      pageSize,
    })
    .catch((error: unknown) => {
      refusal = error instanceof Error ? error.message : String(error);
    });
  const listed = `${context.runId}list`;
  const listedMembers = 10_000;
  await addMembers(
    context,
    listed,
    Array.from({ length: listedMembers }, (_, i) => user(i)),
    joinedAt,
  );
  await track(listed, 0);
  // Readers of its message: every 100th member, so that pages mix read and unread.
  const message = `${listed}-m0`;
  const readers = Array.from({ length: listedMembers / 100 }, (_, i) => user(1 + i * 100));
  context.log(`large group: ${readers.length} receipts, then pages of ${pageSize}`);
  await mapConcurrently(readers, 16, (readerId) =>
    context.receipts.sendReceipts({ conversationId: listed, readerId, messageIds: [message] }),
  );
  const walk = async (filter: ReadFilter, maxPages: number) => {
    const times: number[] = [];
    let pageToken = "";
    while (times.length < maxPages) {
      const at = performance.now();
      const page = await context.receipts.listReadMembers({
        conversationId: listed,
        messageId: message,
        filter,
        pageSize,
        pageToken,
      });
      times.push(performance.now() - at);
      pageToken = page.isFinished ? "" : page.nextPageToken;
    }
    return times;
  };
  const pages = quick ? 100 : 500;
  const unread = summarize(await walk(ReadFilter.UNREAD, pages));
  const read = summarize(await walk(ReadFilter.READ, pages));
  const largeTrack = summarize(largeMs);
  const smallTrack = summarize(smallMs);
  const p50Ratio = ratio(largeTrack.p50Ms, smallTrack.p50Ms);
  return {
    members,
    setupSeconds,
    trackMessages: {
      large: largeTrack,
      small: smallTrack,
      p50Ratio,
      p99Ratio: ratio(largeTrack.p99Ms, smallTrack.p99Ms),
    },
    listReadMembers: {
      pageSize,
      unread,
      read,
      readers: readers.length,
      groupMembers: listedMembers,
      largeGroupAnswer: refusal === "" ? "served" : refusal,
    },
    floor: {
      target: "TrackMessages ratio ≈ 1 (≤ 1.5 at p50); page p99 ≤ 20 ms",
      met: p50Ratio <= 1.5 && unread.p99Ms <= 20 && read.p99Ms <= 20,
    },
  };
}
