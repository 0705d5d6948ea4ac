import { Code, ConnectError } from "@connectrpc/connect";
import type { FixedDelayTimers } from "../domain/fixed-delay-timers.js";

/** What one client address may hold, and how long a request may take to arrive. */
export interface ClientLimits {
  /** TCP connections open at once from one address; more are closed on accept. */
  readonly connectionsPerAddress: number;
  /** Requests in flight at once from one address (HTTP/2 streams and HTTP/1.1 requests). */
  readonly streamsPerAddress: number;
  /** Time from a request's headers to the end of its body (unary and server-streaming RPCs). */
  readonly bodyTimeoutMs: number;
  /** Time for a request's headers to arrive (and for a new connection to name its protocol). */
  readonly headersTimeoutMs: number;
  /** Told of every refusal, by limit (metrics). */
  readonly onRefused?: (
    limit: "connections_per_address" | "streams_per_address" | "request_body_time",
  ) => void;
}

/** Counts what each address holds now; `take` refuses beyond `max`, `give` returns one. */
export class PerAddressCount {
  readonly #max: number;
  readonly #held = new Map<string, number>();

  constructor(max: number) {
    this.#max = max;
  }

  take(address: string): boolean {
    const held = this.#held.get(address) ?? 0;
    if (held >= this.#max) return false;
    this.#held.set(address, held + 1);
    return true;
  }

  give(address: string): void {
    const left = (this.#held.get(address) ?? 1) - 1;
    if (left <= 0) this.#held.delete(address);
    else this.#held.set(address, left);
  }
}

/**
 * A request body that must be complete within `deadlines.delayMs` of its first read: a client
 * that trickles its body (or never finishes it) gets DEADLINE_EXCEEDED in its own protocol,
 * written by the RPC handler like any other error, instead of holding the call open. The
 * deadlines are shared by every call (one timer for all, not one per call). An iterator of
 * its own rather than an async generator: a unary body is read on every call.
 */
export function bodyWithin(
  body: AsyncIterable<Uint8Array>,
  deadlines: FixedDelayTimers,
  onLate: () => void,
): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]() {
      const chunks = body[Symbol.asyncIterator]();
      let expiry: { cancel(): void } | undefined;
      const late = new Promise<never>((_, reject) => {
        expiry = deadlines.start(() => {
          onLate();
          reject(
            new ConnectError(
              `the request was not received within ${deadlines.delayMs} ms; send it at once`,
              Code.DeadlineExceeded,
            ),
          );
        });
      });
      // Rejected while no read waits (between chunks): seen by the next read, never unhandled.
      late.catch(() => {});
      const finished = <T>(result: T): T => {
        expiry?.cancel();
        return result;
      };
      return {
        async next() {
          try {
            const next = await Promise.race([chunks.next(), late]);
            return next.done === true ? finished(next) : next;
          } catch (error) {
            throw finished(error);
          }
        },
        // The body is left as it is (not destroyed): a refused call still writes its answer.
        async return() {
          finished(undefined);
          return { done: true, value: undefined };
        },
      };
    },
  };
}
