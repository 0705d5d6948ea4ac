import { Code, ConnectError } from "@connectrpc/connect";
import type { ReceiptUpdate } from "../../gen/receipts/v1/receipts_pb.js";
import type { ReceiptsClient } from "./receipts-client.js";

export type ConnectionState =
  | { readonly kind: "connecting" }
  | { readonly kind: "live" }
  /** retryAt: when the next attempt starts; undefined while an attempt is under way. */
  | { readonly kind: "reconnecting"; readonly retryAt?: number; readonly reason: string }
  | { readonly kind: "stopped"; readonly reason: string };

export interface ReceiptStreamOptions {
  readonly client: ReceiptsClient;
  readonly conversationId: string;
  /** Only updates of messages this user sent. */
  readonly senderId: string;
  readonly onUpdate: (update: ReceiptUpdate) => void;
  /**
   * Called once a stream opened without a resume token is subscribed: the
   * moment to read the current counts, since updates from here on will arrive.
   */
  readonly onFresh: () => Promise<void>;
  readonly onState: (state: ConnectionState) => void;
  /** A stream silent for this long is presumed dead (the service sends heartbeats every 15 s). */
  readonly silenceMs?: number;
}

const firstRetryMs = 500;
const maxRetryMs = 15_000;

/** Codes that retrying with the same credentials cannot fix. */
const fatal = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.Unimplemented]);

/**
 * Follows WatchReceipts for as long as the page lives: resumes after every
 * disconnect from the last resume token (so no update is missed or repeated),
 * starts over with fresh counts when the token has expired, and backs off
 * exponentially between attempts.
 */
export class ReceiptStream {
  readonly #options: ReceiptStreamOptions;
  readonly #stop = new AbortController();
  #resumeToken = "";

  constructor(options: ReceiptStreamOptions) {
    this.#options = options;
  }

  start(): void {
    void this.#run();
  }

  stop(): void {
    this.#stop.abort();
  }

  async #run(): Promise<void> {
    const { onState } = this.#options;
    let failures = 0;
    let reason = "";
    while (!this.#stop.signal.aborted) {
      onState(failures === 0 ? { kind: "connecting" } : { kind: "reconnecting", reason });
      const outcome = await this.#follow(() => {
        failures = 0;
        onState({ kind: "live" });
      });
      if (this.#stop.signal.aborted) return;
      if (outcome.fatal) {
        onState({ kind: "stopped", reason: outcome.reason });
        return;
      }
      failures += 1;
      reason = outcome.reason;
      const delay = Math.min(maxRetryMs, firstRetryMs * 2 ** (failures - 1));
      const jittered = Math.round(delay * (0.75 + Math.random() * 0.5));
      onState({ kind: "reconnecting", retryAt: Date.now() + jittered, reason });
      await sleep(jittered, this.#stop.signal);
    }
  }

  /** One connection, until it ends; says why it ended. */
  async #follow(onLive: () => void): Promise<{ fatal: boolean; reason: string }> {
    const { client, conversationId, senderId, onUpdate, onFresh } = this.#options;
    const connection = new AbortController();
    const stopConnection = () => connection.abort();
    this.#stop.signal.addEventListener("abort", stopConnection);
    let silence: ReturnType<typeof setTimeout> | undefined;
    const expectTraffic = () => {
      clearTimeout(silence);
      silence = setTimeout(
        () => connection.abort(new ConnectError("no heartbeat from the service", Code.Unavailable)),
        this.#options.silenceMs ?? 40_000,
      );
    };
    const fresh = this.#resumeToken === "";
    let live = false;
    try {
      expectTraffic();
      const updates = client.watchReceipts(
        { conversationIds: [conversationId], senderId, resumeToken: this.#resumeToken },
        { signal: connection.signal },
      );
      for await (const message of updates) {
        expectTraffic();
        if (!live) {
          live = true;
          onLive();
        }
        if (message.update.case === "receipt") onUpdate(message.update.value);
        if (fresh && message.update.case === "heartbeat" && this.#resumeToken === "") {
          // The opening heartbeat: subscribed, so counts read now miss nothing.
          await onFresh();
        }
        this.#resumeToken = message.resumeToken;
      }
      return { fatal: false, reason: "the service closed the stream" };
    } catch (error) {
      const failure = ConnectError.from(error);
      if (failure.code === Code.OutOfRange || failure.code === Code.InvalidArgument) {
        // The token is too old (or unknown to this service): start over and re-read the counts.
        this.#resumeToken = "";
      } else {
        this.#resumeToken = failure.metadata.get("resume-token") ?? this.#resumeToken;
      }
      return { fatal: fatal.has(failure.code), reason: describe(failure) };
    } finally {
      clearTimeout(silence);
      this.#stop.signal.removeEventListener("abort", stopConnection);
      connection.abort();
    }
  }
}

function describe(error: ConnectError): string {
  switch (error.code) {
    case Code.Unauthenticated:
      // The service says "expired" only of a genuine token; any other refusal is no expiry.
      return /\bexpired\b/.test(error.rawMessage)
        ? "your session has expired; sign in again"
        : "your sign-in was not accepted; sign in again";
    case Code.PermissionDenied:
      return "you cannot follow this conversation";
    case Code.Unavailable:
      return error.rawMessage || "the service is unavailable";
    default:
      return error.rawMessage || "connection lost";
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
