import { type Client, ConnectError } from "@connectrpc/connect";
import type {
  ReadReceiptService,
  WatchReceiptsResponse,
} from "../../gen/receipts/v1/receipts_pb.js";

type Receipts = Client<typeof ReadReceiptService>;
type Update = WatchReceiptsResponse;

export const readersOf = (updates: readonly Update[]): string[] =>
  updates.map((u) =>
    u.update.case === "receipt" ? u.update.value.readerId : (u.update.case ?? ""),
  );

/** An open WatchReceipts stream read in the background, so that its consumer is never slow. */
export function follow(client: Receipts, request: Parameters<Receipts["watchReceipts"]>[0]) {
  const abort = new AbortController();
  const updates: Update[] = [];
  let opened!: (resumeToken: string) => void;
  let failed!: (error: unknown) => void;
  /** Resolves with the opening heartbeat's resume token; rejects when the stream fails first. */
  const heartbeat = new Promise<string>((resolve, reject) => {
    opened = resolve;
    failed = reject;
  });
  heartbeat.catch(() => undefined); // awaited only by some callers
  let waiter: (() => void) | undefined;
  const ended = (async () => {
    try {
      for await (const message of client.watchReceipts(request, { signal: abort.signal })) {
        if (message.update.case === "heartbeat") opened(message.resumeToken);
        else updates.push(message);
        waiter?.();
      }
      return undefined;
    } catch (error) {
      failed(error);
      return ConnectError.from(error);
    } finally {
      waiter?.();
    }
  })();
  return {
    updates,
    heartbeat,
    ended,
    /** Resolves once `count` updates arrived (not counting heartbeats). */
    async take(count: number, ms = 15_000): Promise<Update[]> {
      const deadline = Date.now() + ms;
      while (updates.length < count) {
        if (Date.now() > deadline) throw new Error(`${updates.length} of ${count} updates arrived`);
        await new Promise<void>((resolve) => {
          waiter = resolve;
          setTimeout(resolve, 100);
        });
      }
      return updates.slice(0, count);
    },
    close: () => abort.abort(),
  };
}
