import { createHash } from "node:crypto";
import type { ChangeFeed } from "../store/change-feed.js";
import type { AccessPolicy } from "./access-policy.js";
import { type Caller, viewerOf } from "./caller.js";
import {
  AccessEndedError,
  ChangeLogExpiredError,
  invalidArgument,
  ReceiptError,
} from "./errors.js";
import { FixedDelayTimers, type PendingExpiry } from "./fixed-delay-timers.js";
import { limits } from "./limits.js";
import { asSeenByItsReader, type PositionedChange, type ReceiptChange } from "./model.js";
import type { ReaderView } from "./reader-view.js";
import { optionalId, requireId } from "./validate.js";
import { type Filter, Subscription, TenantFanOut, visible } from "./watch-fan-out.js";

export interface WatchRequest {
  readonly conversationIds: readonly string[];
  readonly senderId: string;
  readonly resumeToken: string;
  /** Only this reader's changes, its private ones included ("" for everyone's shown ones). */
  readonly readerId?: string;
}

export type WatchEvent =
  | { readonly kind: "change"; readonly change: ReceiptChange; readonly resumeToken: string }
  | { readonly kind: "heartbeat"; readonly at: number; readonly resumeToken: string };

export interface WatcherOptions {
  readonly feed: ChangeFeed;
  /** Who may watch what; it also ends a user's stream when the user leaves a watched group. */
  readonly policy: Pick<AccessPolicy, "authorizeWatchReceipts">;
  /** Interval between heartbeats on a stream. */
  readonly heartbeatMs: number;
  /** Updates buffered for one stream before its consumer counts as too slow. */
  readonly bufferLimit: number;
  /** Streams open at once in this process. */
  readonly maxStreams: number;
  readonly clock?: () => number;
  /** What a viewer may see of a change; without it every stream sees every shown change. */
  readonly views?: Pick<ReaderView, "changeSeenBy">;
}

const replayBatch = 500;

/**
 * Serves WatchReceipts: replays the change log after a resume token, then
 * follows live changes, with no gap and no duplicate (changes are delivered
 * in position order and the stream skips any position it already passed).
 */
export class ReceiptWatcher {
  readonly #options: WatcherOptions;
  readonly #clock: () => number;
  readonly #open = new Set<Subscription>();
  /** One feed listener per tenant with open streams. */
  readonly #fanOuts = new Map<string, TenantFanOut>();
  /** Every stream's next heartbeat, on one Node timer: 100,000 streams, not 100,000 timers. */
  readonly #beats: FixedDelayTimers;
  #closing = false;

  constructor(options: WatcherOptions) {
    this.#options = options;
    this.#clock = options.clock ?? Date.now;
    this.#beats = new FixedDelayTimers(options.heartbeatMs);
  }

  get openStreams(): number {
    return this.#open.size;
  }

  /** Ends with `callSignal`, or when the caller's access to what it watches ends. */
  async *watch(
    tenant: string,
    caller: Caller,
    request: WatchRequest,
    callSignal: AbortSignal,
  ): AsyncGenerator<WatchEvent> {
    const signal = await this.#options.policy.authorizeWatchReceipts(
      tenant,
      caller,
      request,
      callSignal,
    );
    // A user's stream is its own view; a service caller's the shared one.
    const viewerId = viewerOf(caller, "");
    const filter = validateFilter(request);
    const feed = this.#options.feed;
    const resumeFrom =
      request.resumeToken === "" ? undefined : decodeResumeToken(request.resumeToken, feed, tenant);
    const token = (position: string) => encodeResumeToken(tenant, position);
    const viewed = (change: ReceiptChange) => this.#viewed(tenant, viewerId, change);
    if (this.#closing) throw shuttingDown(request.resumeToken);
    if (this.#open.size >= this.#options.maxStreams) {
      throw new ReceiptError(
        "resource_exhausted",
        "too many open streams on this instance; retry later",
      );
    }

    const subscription = new Subscription(filter, this.#options.bufferLimit);
    this.#open.add(subscription);
    // Changes this stream does not want never wake it: the fan-out offers it its own only.
    const fanOut = this.#fanOutOf(tenant);
    fanOut.add(subscription);
    const onAbort = () => subscription.wake();
    signal.addEventListener("abort", onAbort);
    let beat: PendingExpiry | undefined;
    let beatDue = false;
    const beatLater = () => {
      beat = this.#beats.start(() => {
        beatDue = true;
        subscription.wake();
      });
    };
    try {
      const head = await feed.head(tenant).catch((error: unknown) => {
        throw feedUnavailable(request.resumeToken, error);
      });
      let position = head;
      if (resumeFrom !== undefined) {
        if (feed.comparePositions(resumeFrom, head) > 0) {
          throw invalidArgument("resume_token", "is ahead of this service's change log");
        }
        position = resumeFrom;
        for (;;) {
          const batch = await readAfter(feed, tenant, position, replayBatch);
          for (const { position: at, change } of batch) {
            position = at;
            const shown = visible(filter, change);
            const seen = shown === undefined ? undefined : await viewed(shown);
            if (seen !== undefined) yield { kind: "change", change: seen, resumeToken: token(at) };
          }
          if (batch.length < replayBatch) break;
        }
      }
      yield { kind: "heartbeat", at: this.#clock(), resumeToken: token(position) };

      beatLater();
      while (!signal.aborted) {
        if (this.#closing) throw shuttingDown(token(position));
        if (subscription.interruption !== undefined) {
          throw feedUnavailable(token(position), subscription.interruption);
        }
        if (subscription.overflowed) {
          throw new ReceiptError(
            "resource_exhausted",
            "the stream fell too far behind; resume with the resume token",
            undefined,
            { "resume-token": token(position) },
          );
        }
        const next = subscription.shift();
        if (next !== undefined) {
          if (feed.comparePositions(next.position, position) <= 0) continue;
          position = next.position;
          // Queued changes passed the filter already (and were cut to it).
          const change = await viewed(next.change);
          if (change !== undefined) yield { kind: "change", change, resumeToken: token(position) };
          continue;
        }
        // Queue empty: every change up to the last one passed over was delivered or filtered out.
        const passed = fanOut.latest;
        if (passed !== undefined && feed.comparePositions(passed, position) > 0) position = passed;
        if (beatDue) {
          beatDue = false;
          yield { kind: "heartbeat", at: this.#clock(), resumeToken: token(position) };
          beatLater();
          continue;
        }
        await subscription.wait();
      }
      // Aborted because the caller's access ended (not because it left): say so, and where it was.
      if (signal.reason instanceof AccessEndedError) {
        throw signal.reason.endingAt(token(position));
      }
    } finally {
      beat?.cancel();
      signal.removeEventListener("abort", onAbort);
      fanOut.delete(subscription);
      if (fanOut.size === 0) {
        fanOut.close();
        if (this.#fanOuts.get(tenant) === fanOut) this.#fanOuts.delete(tenant);
      }
      this.#open.delete(subscription);
    }
  }

  /** The change as the stream's viewer sees it; undefined when it is withheld from it. */
  async #viewed(
    tenant: string,
    viewerId: string | undefined,
    change: ReceiptChange,
  ): Promise<ReceiptChange | undefined> {
    const own = asSeenByItsReader(change);
    const views = this.#options.views;
    return viewerId === undefined || views === undefined
      ? own
      : views.changeSeenBy(tenant, viewerId, own);
  }

  #fanOutOf(tenant: string): TenantFanOut {
    let fanOut = this.#fanOuts.get(tenant);
    if (fanOut === undefined) {
      fanOut = new TenantFanOut(this.#options.feed, tenant, (interrupted) => {
        // Streams opened from now on listen afresh; the interrupted ones end.
        if (this.#fanOuts.get(tenant) === interrupted) this.#fanOuts.delete(tenant);
      });
      this.#fanOuts.set(tenant, fanOut);
    }
    return fanOut;
  }

  /** Ends every open stream with UNAVAILABLE and a resume token; refuses new ones. */
  close(): void {
    this.#closing = true;
    for (const subscription of this.#open) subscription.wake();
  }
}

function validateFilter(request: WatchRequest): Filter {
  if (request.conversationIds.length > limits.maxConversationsPerWatch) {
    throw invalidArgument(
      "conversation_ids",
      `must hold at most ${limits.maxConversationsPerWatch} ids, got ${request.conversationIds.length}`,
    );
  }
  for (const [i, id] of request.conversationIds.entries()) requireId(`conversation_ids[${i}]`, id);
  return {
    conversations:
      request.conversationIds.length > 0 ? new Set(request.conversationIds) : undefined,
    senderId: optionalId("sender_id", request.senderId),
    readerId: optionalId("reader_id", request.readerId ?? ""),
  };
}

async function readAfter(
  feed: ChangeFeed,
  tenant: string,
  position: string,
  limit: number,
): Promise<PositionedChange[]> {
  try {
    return await feed.readAfter(tenant, position, limit);
  } catch (error) {
    if (error instanceof ChangeLogExpiredError) throw expiredToken();
    throw error;
  }
}

/**
 * Resume tokens name their tenant (by a digest of its id) as well as a
 * position: positions are counted per tenant, so a token is only ever
 * accepted by the tenant it was issued to. Version 1 tokens named positions
 * shared by all tenants; they are answered as expired.
 */
const tokenVersion = "rt2:";
const expiredTokenVersions = ["rt1:"];

const tenantTag = (tenant: string): string =>
  createHash("sha256").update(tenant).digest("base64url").slice(0, 12);

export function encodeResumeToken(tenant: string, position: string): string {
  return Buffer.from(`${tokenVersion}${tenantTag(tenant)}:${position}`, "utf8").toString(
    "base64url",
  );
}

function decodeResumeToken(token: string, feed: ChangeFeed, tenant: string): string {
  const text = Buffer.from(token, "base64url").toString("utf8");
  if (expiredTokenVersions.some((version) => text.startsWith(version))) throw expiredToken();
  const prefix = `${tokenVersion}${tenantTag(tenant)}:`;
  const position = text.startsWith(prefix) ? text.slice(prefix.length) : "";
  // One answer for a malformed token and another tenant's: neither says whether it was valid.
  if (!feed.isPosition(position)) {
    throw invalidArgument("resume_token", "is not a resume token issued by this service");
  }
  return position;
}

function expiredToken(): ReceiptError {
  return new ReceiptError(
    "out_of_range",
    "updates after this resume token are no longer kept; re-read the messages with GetReceipts and watch again without a token",
    "resume_token",
  );
}

function feedUnavailable(resumeToken: string, cause: unknown): ReceiptError {
  const error = new ReceiptError(
    "unavailable",
    "the change log cannot be followed right now; updates may have been missed: resume with the resume token",
    undefined,
    resumeToken === "" ? undefined : { "resume-token": resumeToken },
  );
  error.cause = cause;
  return error;
}

function shuttingDown(resumeToken: string): ReceiptError {
  return new ReceiptError(
    "unavailable",
    "this instance is shutting down; resume on another with the resume token",
    undefined,
    resumeToken === "" ? undefined : { "resume-token": resumeToken },
  );
}
