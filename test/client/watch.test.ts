import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  Code,
  createReceiptsClient,
  type ReceiptsClient,
  ReceiptsError,
  type WatchEvent,
  type WatchFilter,
  type WatchOptions,
} from "../../client/src/node.js";
import { DemoService } from "../e2e/support/demo-service.js";

/**
 * The client package's watch against the real service: restarts, drains, a
 * consumer too slow for the stream, tokens the service cannot resume from.
 */
describe("watch() of the client package, against the real service", () => {
  const service = new DemoService();
  const stops: AbortController[] = [];
  beforeAll(() => service.start());
  afterEach(() => {
    for (const stop of stops.splice(0)) stop.abort();
  });
  afterAll(() => service.dispose());

  const client = async (userId: string, protocol: "grpc" | "connect" = "grpc") =>
    createReceiptsClient({
      baseUrl: service.baseUrl,
      protocol,
      userToken: await service.tenant.mintUserToken(userId),
    });

  /** Iterates a watch in the background; `paused` holds the consumer on its next event. */
  function follow(receipts: ReceiptsClient, filter: WatchFilter, options: WatchOptions = {}) {
    const stop = new AbortController();
    stops.push(stop);
    const events: WatchEvent[] = [];
    let release: (() => void) | undefined;
    const state = { paused: false, error: undefined as unknown };
    const watch = receipts.watch(filter, { firstDelayMs: 100, ...options, signal: stop.signal });
    const done = (async () => {
      for await (const event of watch) {
        events.push(event);
        if (state.paused) await new Promise<void>((resolve) => (release = resolve));
      }
    })().catch((error: unknown) => {
      state.error = error;
    });
    return {
      events,
      watch,
      done,
      state,
      types: () => events.map((event) => event.type).filter((type) => type !== "heartbeat"),
      readers: () =>
        events.flatMap((event) =>
          event.type === "receipt"
            ? [`${event.update.receipt?.messageId}:${event.update.readerId}`]
            : [],
        ),
      resume() {
        state.paused = false;
        release?.();
      },
      liveCount: () => events.filter((event) => event.type === "live").length,
    };
  }

  const read = async (groupId: string, readerId: string, messageIds: string[]) => {
    const reader = await client(readerId, "connect");
    await reader.receipts.sendReceipts({ conversationId: groupId, readerId, messageIds });
  };

  it("goes live, asks for a re-read once (no token yet), then delivers each receipt", async () => {
    const [m0, m1] = await service.seedGroup({
      groupId: "w1",
      members: ["s", "a", "b"],
      senderId: "s",
      count: 2,
    });
    const watch = follow(await client("s"), { conversationIds: ["w1"], senderId: "s" });
    await expect.poll(watch.types, { timeout: 10_000 }).toEqual(["live", "reread"]);
    expect(watch.events[0]).toMatchObject({ type: "live", resumed: false });
    expect(watch.events[1]).toMatchObject({ type: "reread", reason: "no-token" });
    await read("w1", "a", [m0 ?? ""]);
    await read("w1", "b", [m1 ?? ""]);
    await expect.poll(watch.readers, { timeout: 5_000 }).toEqual([`${m0}:a`, `${m1}:b`]);
    // Every event's token is the watch's token right after it.
    expect(watch.watch.resumeToken).toBe(watch.events.at(-1)?.resumeToken);
  });

  it("resumes through a restart (drained with UNAVAILABLE): the downtime's receipts arrive once, no re-read", async () => {
    const [m] = await service.seedGroup({
      groupId: "w2",
      members: ["s", "a", "b", "c"],
      senderId: "s",
      count: 1,
    });
    const id = m ?? "";
    const watch = follow(await client("s"), { conversationIds: ["w2"] });
    await expect.poll(watch.liveCount, { timeout: 10_000 }).toBe(1);
    await read("w2", "a", [id]);
    await expect.poll(watch.readers, { timeout: 5_000 }).toEqual([`${id}:a`]);

    await service.stop();
    await expect.poll(() => watch.types().at(-1), { timeout: 5_000 }).toBe("reconnecting");
    const drained = watch.events.find((event) => event.type === "reconnecting");
    // The drain said where to resume: the last update delivered.
    expect(drained?.type === "reconnecting" && drained.error.code).toBe(Code.Unavailable);
    expect(drained?.type === "reconnecting" && drained.error.resumeToken).toBe(
      watch.events.find((event) => event.type === "receipt")?.resumeToken,
    );
    await service.start();
    await read("w2", "b", [id]);
    await expect.poll(watch.liveCount, { timeout: 15_000 }).toBe(2);
    await read("w2", "c", [id]);
    await expect
      .poll(watch.readers, { timeout: 10_000 })
      .toEqual([`${id}:a`, `${id}:b`, `${id}:c`]);
    expect(
      watch.events
        .filter((event) => event.type === "live")
        .map((e) => e.type === "live" && e.resumed),
    ).toEqual([false, true]);
    expect(watch.types().filter((type) => type === "reread")).toHaveLength(1);
    expect(
      watch.events.flatMap((e) => (e.type === "receipt" ? [e.update.receipt?.readCount] : [])),
    ).toEqual([1, 2, 3]);
  }, 30_000);

  it("a consumer too slow for the stream (RESOURCE_EXHAUSTED) resumes from the token: every receipt once, in order", async () => {
    await service.stop();
    await service.start({ env: { RECEIPTS_WATCH_BUFFER: "5" } });
    // 10 readers of 100 messages: 1,000 updates, more than the transport buffers hold.
    const readers = Array.from({ length: 10 }, (_, i) => `r${i}`);
    const ids = await service.seedGroup({
      groupId: "w3",
      members: ["s", ...readers],
      senderId: "s",
      count: 100,
    });
    const watch = follow(await client("s"), { conversationIds: ["w3"] });
    await expect.poll(watch.liveCount, { timeout: 10_000 }).toBe(1);
    watch.state.paused = true;
    await read("w3", "r0", [ids[0] ?? ""]);
    await expect.poll(watch.readers, { timeout: 5_000 }).toHaveLength(1);
    // The consumer sits on the first receipt while the rest pass its buffer of 5.
    await read("w3", "r0", ids.slice(1));
    for (const reader of readers.slice(1)) await read("w3", reader, ids);
    await new Promise((resolve) => setTimeout(resolve, 500));
    watch.resume();
    const expected = readers.flatMap((reader) => ids.map((id) => `${id}:${reader}`));
    await expect.poll(() => watch.readers().length, { timeout: 20_000 }).toBe(expected.length);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(watch.readers()).toEqual(expected);
    const cutOff = watch.events.find((event) => event.type === "reconnecting");
    expect(cutOff?.type === "reconnecting" && cutOff.error.code).toBe(Code.ResourceExhausted);
    expect(cutOff?.type === "reconnecting" && cutOff.error.resumeToken).toBeTruthy();
    await service.stop();
    await service.start();
  }, 30_000);

  it("starts over with a re-read when the log no longer holds its token (OUT_OF_RANGE)", async () => {
    const [m0, m1] = await service.seedGroup({
      groupId: "w4",
      members: ["s", "a", "b"],
      senderId: "s",
      count: 2,
    });
    const watch = follow(await client("s"), { conversationIds: ["w4"] });
    await expect.poll(watch.liveCount, { timeout: 10_000 }).toBe(1);
    await read("w4", "a", [m0 ?? ""]);
    await expect.poll(watch.readers, { timeout: 5_000 }).toHaveLength(1);
    await service.stop();
    // What the retention window passing does: everything logged so far counts as pruned.
    const db = new DatabaseSync(join(service.dataDir, "receipts.db"));
    db.exec("UPDATE change_log_heads SET pruned_through = head + 1");
    db.close();
    await service.start();
    await expect.poll(watch.liveCount, { timeout: 15_000 }).toBe(2);
    const last = watch.events.filter((event) => event.type !== "heartbeat").slice(-2);
    expect(last[0]).toMatchObject({ type: "live", resumed: false });
    expect(last[1]).toMatchObject({ type: "reread", reason: "token-expired" });
    await read("w4", "b", [m1 ?? ""]);
    await expect.poll(watch.readers, { timeout: 5_000 }).toEqual([`${m0}:a`, `${m1}:b`]);
    expect(watch.state.error).toBeUndefined();
  }, 30_000);

  it("starts over with a re-read when the service does not know its token (another store)", async () => {
    const [m] = await service.seedGroup({
      groupId: "w5",
      members: ["s", "a"],
      senderId: "s",
      count: 1,
    });
    // A sender may follow its own messages, whatever the new store knows of the group.
    const watch = follow(await client("s"), { conversationIds: ["w5"], senderId: "s" });
    await expect.poll(watch.liveCount, { timeout: 10_000 }).toBe(1);
    await read("w5", "a", [m ?? ""]);
    await expect.poll(watch.readers, { timeout: 5_000 }).toHaveLength(1);
    await service.stop();
    await service.start({ freshData: true });
    await expect.poll(watch.liveCount, { timeout: 15_000 }).toBe(2);
    expect(
      watch.events
        .filter((event) => event.type === "reread")
        .map((e) => e.type === "reread" && e.reason),
    ).toEqual(["no-token", "token-rejected"]);
  }, 30_000);

  it("resumes from a token the app kept, across clients: only the updates after it", async () => {
    const [m] = await service.seedGroup({
      groupId: "w6",
      members: ["s", "a", "b"],
      senderId: "s",
      count: 1,
    });
    const first = follow(await client("s"), { conversationIds: ["w6"] });
    await read("w6", "a", [m ?? ""]);
    await expect.poll(first.readers, { timeout: 10_000 }).toHaveLength(1);
    const kept = first.watch.resumeToken;
    for (const stop of stops.splice(0)) stop.abort();
    await first.done;
    await read("w6", "b", [m ?? ""]);
    const second = follow(
      await client("s", "connect"),
      { conversationIds: ["w6"] },
      { resumeToken: kept },
    );
    await expect.poll(second.readers, { timeout: 10_000 }).toEqual([`${m}:b`]);
    expect(second.types().slice(0, 2)).toEqual(["receipt", "live"]);
    expect(second.types()).not.toContain("reread");
  });

  it("ends with a typed error the app can act on when retrying cannot help", async () => {
    const stranger = createReceiptsClient({
      baseUrl: service.baseUrl,
      protocol: "grpc",
      userToken: await new DemoService().tenant.mintUserToken("s"),
    });
    const watch = follow(stranger, { conversationIds: ["w1"] });
    await watch.done;
    expect(watch.state.error).toBeInstanceOf(ReceiptsError);
    expect((watch.state.error as ReceiptsError).code).toBe(Code.Unauthenticated);
    expect(watch.types()).toEqual([]);

    const bad = follow(await client("s"), { conversationIds: ["w1", ""] });
    await bad.done;
    expect((bad.state.error as ReceiptsError).field).toBe("conversation_ids[1]");
    expect((bad.state.error as ReceiptsError).codeName).toBe("invalid_argument");
  });
});
