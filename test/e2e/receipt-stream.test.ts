import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createReceiptsClient, type ReceiptsClient } from "../../client/src/node.js";
import type { ReceiptUpdate } from "../../gen/receipts/v1/receipts_pb.js";
import { type ConnectionState, ReceiptStream } from "../../web/src/receipt-stream.js";
import { DemoService } from "./support/demo-service.js";

/** The web client's WatchReceipts follower (the client package's watch), against the real service, outside the browser. */
describe("ReceiptStream", () => {
  const service = new DemoService();
  const streams: ReceiptStream[] = [];
  beforeAll(() => service.start());
  afterEach(() => {
    for (const stream of streams.splice(0)) stream.stop();
  });
  afterAll(() => service.dispose());

  function follow(client: ReceiptsClient, conversationId: string, senderId: string) {
    const states: ConnectionState["kind"][] = [];
    const updates: ReceiptUpdate[] = [];
    let fresh = 0;
    const stream = new ReceiptStream({
      client,
      conversationId,
      senderId,
      onUpdate: (update) => updates.push(update),
      onFresh: async () => {
        fresh += 1;
      },
      onState: (state) => {
        if (states.at(-1) !== state.kind) states.push(state.kind);
      },
    });
    streams.push(stream);
    stream.start();
    return {
      states,
      updates,
      fresh: () => fresh,
      readers: () => updates.map((u) => `${u.receipt?.messageId}:${u.readerId}`),
      live: () => expect.poll(() => states.at(-1), { timeout: 15_000 }).toBe("live"),
    };
  }

  /** The package's client as the page makes it (Connect), with a user token. */
  const pageClient = (userToken: string) =>
    createReceiptsClient({ baseUrl: service.baseUrl, protocol: "connect", userToken });
  const userClient = async (userId: string) =>
    pageClient(await service.tenant.mintUserToken(userId));

  const read = async (groupId: string, readerId: string, messageId: string) => {
    const client = await service.userClient(readerId);
    await client.sendReceipts({ conversationId: groupId, readerId, messageIds: [messageId] });
  };

  it("reads the counts once subscribed, then follows the sender's receipts", async () => {
    const [m0, m1] = await service.seedGroup({
      groupId: "g1",
      members: ["s", "a", "b"],
      senderId: "s",
      count: 2,
    });
    const watch = follow(await userClient("s"), "g1", "s");
    await watch.live();
    expect(watch.states).toEqual(["connecting", "live"]);
    expect(watch.fresh()).toBe(1);
    await read("g1", "a", m0 ?? "");
    await read("g1", "b", m1 ?? "");
    await expect.poll(watch.readers, { timeout: 5_000 }).toEqual([`${m0}:a`, `${m1}:b`]);
    expect(watch.updates[1]?.receipt).toMatchObject({ readCount: 1, unreadCount: 1 });
  });

  it("resumes after a restart with its token: receipts of the downtime arrive once, no re-read", async () => {
    const ids = await service.seedGroup({
      groupId: "g2",
      members: ["s", "a", "b", "c"],
      senderId: "s",
      count: 1,
    });
    const m = ids[0] ?? "";
    const watch = follow(await userClient("s"), "g2", "s");
    await watch.live();
    await read("g2", "a", m);
    await expect.poll(watch.readers, { timeout: 5_000 }).toEqual([`${m}:a`]);

    await service.stop();
    await expect.poll(() => watch.states.at(-1), { timeout: 5_000 }).toBe("reconnecting");
    await service.start();
    // Sent right away, most likely before the stream is back: the resume replays it.
    await read("g2", "b", m);
    await watch.live();
    await read("g2", "c", m);
    await expect.poll(watch.readers, { timeout: 10_000 }).toEqual([`${m}:a`, `${m}:b`, `${m}:c`]);
    expect(watch.updates.map((u) => u.receipt?.readCount)).toEqual([1, 2, 3]);
    expect(watch.fresh()).toBe(1);
  }, 30_000);

  it("starts over with fresh counts when its token means nothing to the service", async () => {
    const [m] = await service.seedGroup({
      groupId: "g3",
      members: ["s", "a"],
      senderId: "s",
      count: 1,
    });
    const watch = follow(await userClient("s"), "g3", "s");
    await watch.live();
    expect(watch.fresh()).toBe(1);
    await read("g3", "a", m ?? "");
    await expect.poll(watch.readers, { timeout: 5_000 }).toHaveLength(1);

    // Another store behind the same address: the old resume token is ahead of its change log.
    await service.stop();
    await service.start({ freshData: true });
    await expect.poll(watch.fresh, { timeout: 15_000 }).toBe(2);
    await watch.live();
    const [again] = await service.seedGroup({
      groupId: "g3",
      members: ["s", "a"],
      senderId: "s",
      count: 1,
    });
    await read("g3", "a", again ?? "");
    await expect.poll(watch.readers, { timeout: 5_000 }).toHaveLength(2);
  }, 30_000);

  it("stops, saying so, when the service refuses the user's credentials", async () => {
    const foreign = await new DemoService().tenant.mintUserToken("s");
    const watch = follow(pageClient(foreign), "g1", "s");
    await expect.poll(() => watch.states.at(-1), { timeout: 5_000 }).toBe("stopped");
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(watch.states).toEqual(["connecting", "stopped"]);
  });
});
