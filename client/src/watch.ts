import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type {
  MessageDeletedUpdate,
  ReadHorizonUpdate,
  ReadReceiptService,
  ReceiptUpdate,
} from "../../gen/receipts/v1/receipts_pb.js";
import { type BackoffOptions, backoffDelayMs, sleep } from "./backoff.js";
import { ReceiptsError } from "./receipts-error.js";

/** What to follow: conversations, the messages of one sender, both, or neither (the whole tenant). */
export interface WatchFilter {
  readonly conversationIds?: readonly string[];
  readonly senderId?: string;
  /** Only this reader's reads, its private ones included (a user: only itself). */
  readonly readerId?: string;
}

export interface WatchOptions extends BackoffOptions {
  /** The last token the app kept (from any event): the watch starts right after it. */
  readonly resumeToken?: string;
  /** Ends the iteration when aborted. */
  readonly signal?: AbortSignal;
  /**
   * A connection silent for this long is presumed dead and replaced (default
   * 45 s; the service sends a heartbeat every 15 s).
   */
  readonly silenceMs?: number;
}

/** Why the app must re-read the state with GetReceipts: it may have missed updates. */
export type RereadReason =
  /** The watch started without a resume token: nothing tells what happened before. */
  | "no-token"
  /** The service no longer holds the updates after the token (OUT_OF_RANGE). */
  | "token-expired"
  /** The token means nothing to this service, e.g. another store behind the address (INVALID_ARGUMENT). */
  | "token-rejected";

/** Every event carries the resume token to keep: passed back, the watch resumes right after it. */
export type WatchEvent =
  | { readonly type: "receipt"; readonly update: ReceiptUpdate; readonly resumeToken: string }
  | {
      readonly type: "readHorizon";
      readonly update: ReadHorizonUpdate;
      readonly resumeToken: string;
    }
  /** Messages were deleted (DeleteMessages): drop them and their receipts from the view. */
  | {
      readonly type: "messageDeleted";
      readonly update: MessageDeletedUpdate;
      readonly resumeToken: string;
    }
  /**
   * Subscribed and caught up: every update from here on arrives. After a
   * resume the updates missed meanwhile came just before this event.
   */
  | { readonly type: "live"; readonly resumed: boolean; readonly resumeToken: string }
  /**
   * Right after `live` on a stream that could not resume: read the current
   * state now. Reading after the subscription is what makes it gap-free.
   */
  | { readonly type: "reread"; readonly reason: RereadReason; readonly resumeToken: string }
  | { readonly type: "heartbeat"; readonly sentAt: Date | undefined; readonly resumeToken: string }
  /** The connection ended; the next attempt starts in `delayMs`. */
  | {
      readonly type: "reconnecting";
      readonly error: ReceiptsError;
      /** Failed attempts in a row, 1 for the first. */
      readonly attempt: number;
      readonly delayMs: number;
      readonly resumeToken: string;
    };

/** Codes that retrying the same stream with the same credentials cannot fix. */
const fatal: ReadonlySet<Code> = new Set([
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.PermissionDenied,
  Code.FailedPrecondition,
  Code.OutOfRange,
  Code.Unimplemented,
  Code.Unauthenticated,
]);

/** Tokens of the updates delivered lately: an update seen again is never delivered again. */
const rememberedTokens = 10_000;

/**
 * One watch: an async iterable of WatchEvent that ends only when its signal
 * aborts, the loop breaks, or the service refuses it for good (then it throws
 * a ReceiptsError: bad filter, credentials, permission).
 */
export class ReceiptWatch implements AsyncIterable<WatchEvent> {
  readonly #client: Client<typeof ReadReceiptService>;
  readonly #filter: WatchFilter;
  readonly #options: WatchOptions;
  #resumeToken: string;
  #iterated = false;

  constructor(
    client: Client<typeof ReadReceiptService>,
    filter: WatchFilter,
    options: WatchOptions = {},
  ) {
    this.#client = client;
    this.#filter = filter;
    this.#options = options;
    this.#resumeToken = options.resumeToken ?? "";
  }

  /** The token to resume after the last event delivered (empty before the first). */
  get resumeToken(): string {
    return this.#resumeToken;
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    if (this.#iterated) throw new TypeError("a ReceiptWatch can be iterated once");
    this.#iterated = true;
    return this.#run();
  }

  async *#run(): AsyncGenerator<WatchEvent> {
    const signal = this.#options.signal;
    const stopped = () => signal?.aborted === true;
    const delivered = new RecentSet(rememberedTokens);
    let reread: RereadReason | undefined = this.#resumeToken === "" ? "no-token" : undefined;
    let failures = 0;
    while (!stopped()) {
      let error: ReceiptsError;
      const connection = new Connection(signal, this.#options.silenceMs ?? 45_000);
      try {
        const messages = this.#client.watchReceipts(
          {
            conversationIds: [...(this.#filter.conversationIds ?? [])],
            senderId: this.#filter.senderId ?? "",
            readerId: this.#filter.readerId ?? "",
            resumeToken: this.#resumeToken,
          },
          { signal: connection.signal },
        );
        let live = false;
        for await (const message of messages) {
          const token = message.resumeToken;
          const { update } = message;
          let event: WatchEvent | undefined;
          if (
            update.case === "receipt" ||
            update.case === "readHorizon" ||
            update.case === "messageDeleted"
          ) {
            if (delivered.has(token)) continue;
            delivered.add(token);
            event =
              update.case === "receipt"
                ? { type: "receipt", update: update.value, resumeToken: token }
                : update.case === "readHorizon"
                  ? { type: "readHorizon", update: update.value, resumeToken: token }
                  : { type: "messageDeleted", update: update.value, resumeToken: token };
          } else if (update.case === "heartbeat" && live) {
            const sentAt = update.value.sentAt;
            event = {
              type: "heartbeat",
              sentAt: sentAt === undefined ? undefined : timestampDate(sentAt),
              resumeToken: token,
            };
          }
          if (token !== "") this.#resumeToken = token;
          // The app's time with an event is not the connection's silence.
          connection.pause();
          if (event !== undefined) {
            yield event;
          } else if (update.case === "heartbeat") {
            // The opening heartbeat: subscribed, the replay (if any) done.
            live = true;
            failures = 0;
            yield { type: "live", resumed: reread === undefined, resumeToken: token };
            if (reread !== undefined) {
              const reason = reread;
              reread = undefined;
              yield { type: "reread", reason, resumeToken: token };
            }
          }
          connection.expectTraffic();
        }
        error = new ReceiptsError(
          new ConnectError("the service ended the stream", Code.Unavailable),
        );
      } catch (reason) {
        if (stopped()) return;
        error = ReceiptsError.from(reason);
      } finally {
        connection.close();
      }

      const lostToken = this.#resumeToken === "" ? undefined : tokenLost(error);
      if (lostToken !== undefined) {
        // Start over right away: a fresh stream, then `reread` once it is live.
        this.#resumeToken = "";
        reread = lostToken;
        continue;
      }
      if (fatal.has(error.code)) throw error;
      // A drain or a slow consumer says where to resume; never behind what was delivered.
      if (error.resumeToken !== undefined && error.resumeToken !== "") {
        this.#resumeToken = error.resumeToken;
      }
      failures += 1;
      const delayMs = Math.max(error.retryAfterMs ?? 0, backoffDelayMs(failures, this.#options));
      yield {
        type: "reconnecting",
        error,
        attempt: failures,
        delayMs,
        resumeToken: this.#resumeToken,
      };
      await sleep(delayMs, signal);
    }
  }
}

function tokenLost(error: ReceiptsError): RereadReason | undefined {
  if (error.code === Code.OutOfRange) return "token-expired";
  if (error.code === Code.InvalidArgument && error.field === "resume_token")
    return "token-rejected";
  return undefined;
}

/** One attempt's abort signal: the watch's signal, or silence past the limit. */
class Connection {
  readonly #controller = new AbortController();
  readonly #silenceMs: number;
  readonly #outer: AbortSignal | undefined;
  readonly #onOuterAbort = () => this.#controller.abort();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(outer: AbortSignal | undefined, silenceMs: number) {
    this.#outer = outer;
    this.#silenceMs = silenceMs;
    outer?.addEventListener("abort", this.#onOuterAbort);
    this.expectTraffic();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  expectTraffic(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#controller.abort(
        new ConnectError(`no message from the service for ${this.#silenceMs} ms`, Code.Unavailable),
      );
    }, this.#silenceMs);
  }

  pause(): void {
    clearTimeout(this.#timer);
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#outer?.removeEventListener("abort", this.#onOuterAbort);
    this.#controller.abort();
  }
}

/** A set of the last `capacity` values added. */
class RecentSet {
  readonly #values = new Set<string>();
  readonly #capacity: number;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  has(value: string): boolean {
    return this.#values.has(value);
  }

  add(value: string): void {
    this.#values.add(value);
    if (this.#values.size > this.#capacity) {
      const oldest = this.#values.values().next().value;
      if (oldest !== undefined) this.#values.delete(oldest);
    }
  }
}
