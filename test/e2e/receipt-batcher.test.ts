import type { Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReadFilter, type ReadReceiptService } from "../../gen/receipts/v1/receipts_pb.js";
import { ReceiptBatcher } from "../../web/src/receipt-batcher.js";
import { DemoService } from "./support/demo-service.js";

/** The web client's SendReceipts policy, against the real service (outside the browser). */
describe("ReceiptBatcher", () => {
  const service = new DemoService();
  beforeAll(() => service.start());
  afterAll(() => service.dispose());

  /** A batcher sending as `readerId`, recording every call it makes. */
  async function batcherFor(groupId: string, readerId: string) {
    const client = await service.userClient(readerId);
    const calls: string[][] = [];
    const acknowledged: string[] = [];
    const batcher = new ReceiptBatcher({
      delayMs: 20,
      firstRetryMs: 100,
      maxRetryMs: 400,
      send: async (messageIds) => {
        calls.push([...messageIds]);
        await client.sendReceipts({
          conversationId: groupId,
          readerId,
          messageIds: [...messageIds],
        });
      },
      onAcknowledged: (ids) => acknowledged.push(...ids),
    });
    return { batcher, calls, acknowledged };
  }

  async function readBy(
    client: Client<typeof ReadReceiptService>,
    groupId: string,
    messageId: string,
  ) {
    const page = await client.listReadMembers({
      conversationId: groupId,
      messageId,
      filter: ReadFilter.READ,
    });
    return page.members.map((m) => m.userId);
  }

  it("sends what was seen together, at most 100 ids per call, each id once", async () => {
    const ids = await service.seedGroup({
      groupId: "many",
      members: ["s", "r"],
      senderId: "s",
      count: 250,
    });
    const { batcher, calls, acknowledged } = await batcherFor("many", "r");
    for (const id of [...ids, ...ids.slice(0, 30)]) batcher.add(id);
    await expect.poll(() => acknowledged.length, { timeout: 10_000 }).toBe(250);
    expect(calls.map((c) => c.length)).toEqual([100, 100, 50]);
    expect(new Set(calls.flat()).size).toBe(250);
    const got = await service.serviceClient().getReceipts({
      conversationId: "many",
      messageIds: ids.slice(150, 250),
    });
    expect(got.receipts.every((r) => r.readCount === 1)).toBe(true);

    batcher.add(ids[0] ?? "");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls).toHaveLength(3);
  });

  it("isolates a refused id and still sends the others", async () => {
    const ids = await service.seedGroup({
      groupId: "late",
      members: ["s", "r"],
      senderId: "s",
      count: 8,
    });
    // "newcomer" joins after the first message: not in its audience, so that receipt is refused.
    await service.addMembers("late", ["newcomer"], Date.UTC(2026, 0, 2) + 500);
    const { batcher, calls, acknowledged } = await batcherFor("late", "newcomer");
    for (const id of ids) batcher.add(id);
    await expect.poll(() => acknowledged.length, { timeout: 10_000 }).toBe(7);
    expect(acknowledged).not.toContain("late-0");
    expect(calls[0]).toEqual(ids);
    // Split in halves until the refused id stands alone: a handful of calls, not one per id.
    expect(calls.length).toBeLessThanOrEqual(7);
    const client = service.serviceClient();
    expect(await readBy(client, "late", "late-7")).toEqual(["newcomer"]);
    expect(await readBy(client, "late", "late-0")).toEqual([]);
  });

  it("keeps receipts through a service restart and sends them once it is back", async () => {
    const ids = await service.seedGroup({
      groupId: "restart",
      members: ["s", "r"],
      senderId: "s",
      count: 3,
    });
    const { batcher, acknowledged } = await batcherFor("restart", "r");
    await service.stop();
    for (const id of ids) batcher.add(id);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(acknowledged).toEqual([]);
    await service.start();
    await expect.poll(() => acknowledged.length, { timeout: 10_000 }).toBe(3);
    expect(await readBy(service.serviceClient(), "restart", ids[2] ?? "")).toEqual(["r"]);
  });

  it("does not send again what MarkConversationRead already covered", async () => {
    const ids = await service.seedGroup({
      groupId: "marked",
      members: ["s", "r"],
      senderId: "s",
      count: 3,
    });
    const { batcher, calls, acknowledged } = await batcherFor("marked", "r");
    batcher.markAcknowledged(ids.slice(0, 2));
    for (const id of ids) batcher.add(id);
    await expect.poll(() => acknowledged.length, { timeout: 10_000 }).toBe(3);
    expect(calls).toEqual([[ids[2]]]);
  });

  it("stops calling when the session is no longer valid", async () => {
    const ids = await service.seedGroup({
      groupId: "expired",
      members: ["s", "r"],
      senderId: "s",
      count: 2,
    });
    // A token signed with another tenant's key: refused as UNAUTHENTICATED.
    const foreign = await new DemoService().tenant.mintUserToken("r");
    const client = service.clientWith(`Bearer ${foreign}`);
    const calls: string[][] = [];
    const batcher = new ReceiptBatcher({
      delayMs: 10,
      firstRetryMs: 20,
      send: async (messageIds) => {
        calls.push([...messageIds]);
        await client.sendReceipts({
          conversationId: "expired",
          readerId: "r",
          messageIds: [...messageIds],
        });
      },
    });
    for (const id of ids) batcher.add(id);
    await expect.poll(() => calls.length, { timeout: 5_000 }).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(calls).toHaveLength(1);
  });
});
