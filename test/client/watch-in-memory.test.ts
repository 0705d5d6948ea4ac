import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { buildReceiptsClient } from "../../client/src/receipts-client.js";
import type { WatchEvent } from "../../client/src/watch.js";
import {
  ReadReceiptService,
  type WatchReceiptsRequest,
  type WatchReceiptsResponse,
  WatchReceiptsResponseSchema,
} from "../../gen/receipts/v1/receipts_pb.js";

const heartbeat = (token: string) =>
  create(WatchReceiptsResponseSchema, {
    update: { case: "heartbeat", value: {} },
    resumeToken: token,
  });
const receipt = (messageId: string, token: string) =>
  create(WatchReceiptsResponseSchema, {
    update: { case: "receipt", value: { receipt: { messageId }, readerId: "r" } },
    resumeToken: token,
  });

/** A watch whose WatchReceipts is `connections[i]` on the i-th connection. */
function watchOf(
  connections: ((
    request: WatchReceiptsRequest,
    signal: AbortSignal,
  ) => AsyncIterable<WatchReceiptsResponse>)[],
  silenceMs = 30_000,
) {
  const requests: WatchReceiptsRequest[] = [];
  const client = buildReceiptsClient({ baseUrl: "http://in-memory" }, (_, interceptors) =>
    createRouterTransport(
      ({ service }) => {
        service(ReadReceiptService, {
          watchReceipts(request, context) {
            requests.push(request);
            const connection = connections[requests.length - 1];
            if (connection === undefined) throw new ConnectError("no more", Code.PermissionDenied);
            return connection(request, context.signal);
          },
        });
      },
      { transport: { interceptors } },
    ),
  );
  const stop = new AbortController();
  const events: WatchEvent[] = [];
  const done = (async () => {
    for await (const event of client.watch(
      {},
      { signal: stop.signal, firstDelayMs: 1, maxDelayMs: 1, silenceMs },
    )) {
      events.push(event);
    }
  })().catch((error: unknown) => ConnectError.from(error));
  return { requests, events, done, stop };
}

describe("watch() in memory: what a real service does not do on purpose", () => {
  it("never delivers an update twice, even when a resumed stream replays it", async () => {
    const watch = watchOf([
      async function* () {
        yield heartbeat("t0");
        yield receipt("a", "t1");
        yield receipt("b", "t2");
        throw new ConnectError("dropped", Code.Unavailable);
      },
      // A faulty replay: from the start, not after t2.
      async function* () {
        yield receipt("a", "t1");
        yield receipt("b", "t2");
        yield receipt("c", "t3");
        yield heartbeat("t3");
      },
    ]);
    const ended = await watch.done;
    expect(ended?.code).toBe(Code.PermissionDenied);
    expect(watch.requests.map((request) => request.resumeToken)).toEqual(["", "t2", "t3"]);
    const delivered = watch.events.flatMap((event) =>
      event.type === "receipt" ? [event.update.receipt?.messageId] : [],
    );
    expect(delivered).toEqual(["a", "b", "c"]);
  });

  it("replaces a connection that falls silent (no heartbeat within silenceMs)", async () => {
    const watch = watchOf(
      [
        async function* (_request, signal) {
          yield heartbeat("t0");
          // Silent until the client gives up on it.
          await new Promise((resolve) => signal.addEventListener("abort", resolve));
        },
        async function* () {
          yield heartbeat("t0");
        },
      ],
      200,
    );
    await watch.done;
    const reconnecting = watch.events.find((event) => event.type === "reconnecting");
    expect(reconnecting?.type === "reconnecting" && reconnecting.error.code).toBe(Code.Unavailable);
    expect(watch.requests.map((request) => request.resumeToken)).toEqual(["", "t0", "t0"]);
  });

  it("does not count the app's own time with an event as silence", async () => {
    let slow = true;
    const requests: string[] = [];
    const client = buildReceiptsClient({ baseUrl: "http://in-memory" }, (_, interceptors) =>
      createRouterTransport(
        ({ service }) => {
          service(ReadReceiptService, {
            async *watchReceipts(request) {
              requests.push(request.resumeToken);
              yield heartbeat("t0");
              yield receipt("a", "t1");
              yield receipt("b", "t2");
            },
          });
        },
        { transport: { interceptors } },
      ),
    );
    const stop = new AbortController();
    const seen: string[] = [];
    for await (const event of client.watch({}, { signal: stop.signal, silenceMs: 100 })) {
      seen.push(event.type);
      if (slow) await new Promise((resolve) => setTimeout(resolve, 300));
      slow = false;
      if (seen.length === 3) stop.abort();
    }
    expect(seen).toEqual(["live", "reread", "receipt"]);
    expect(requests).toEqual([""]);
  });
});
