import { Code, type ReceiptsClient, ReceiptsError } from "../../client/src/browser.js";
import type { ReceiptUpdate } from "../../gen/receipts/v1/receipts_pb.js";

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

/**
 * The page's view of the client package's watch(), which resumes, backs off
 * and never repeats an update: its events become connection states, receipts
 * and "read the counts now".
 */
export class ReceiptStream {
  readonly #options: ReceiptStreamOptions;
  readonly #stop = new AbortController();

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
    const { client, conversationId, senderId, onUpdate, onFresh, onState } = this.#options;
    let attemptStarts: ReturnType<typeof setTimeout> | undefined;
    onState({ kind: "connecting" });
    const watch = client.watch(
      { conversationIds: [conversationId], senderId },
      { signal: this.#stop.signal, silenceMs: this.#options.silenceMs ?? 40_000 },
    );
    try {
      for await (const event of watch) {
        clearTimeout(attemptStarts);
        switch (event.type) {
          case "receipt":
            onUpdate(event.update);
            break;
          case "live":
            onState({ kind: "live" });
            break;
          case "reread":
            await onFresh();
            break;
          case "reconnecting": {
            const reason = describe(event.error);
            onState({ kind: "reconnecting", retryAt: Date.now() + event.delayMs, reason });
            attemptStarts = setTimeout(
              () => onState({ kind: "reconnecting", reason }),
              event.delayMs,
            );
            break;
          }
        }
      }
    } catch (error) {
      if (!this.#stop.signal.aborted) {
        onState({ kind: "stopped", reason: describe(ReceiptsError.from(error)) });
      }
    } finally {
      clearTimeout(attemptStarts);
    }
  }
}

function describe(error: ReceiptsError): string {
  switch (error.code) {
    case Code.Unauthenticated:
      return "your session has expired; sign in again";
    case Code.PermissionDenied:
      return "you cannot follow this conversation";
    case Code.Unavailable:
      return error.rawMessage || "the service is unavailable";
    default:
      return error.rawMessage || "connection lost";
  }
}
