import { describe, expect, it } from "vitest";
import type { FailedDelivery, WebhookStateStore } from "../src/store/webhook-state.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The same promises from every backend of webhook state. */
export function describeWebhookState(name: string, open: () => Promise<WebhookStateStore>): void {
  describe(`webhook state in ${name}`, () => {
    const key = { tenant: "acme", endpoint: "crm" };
    /** Runs `check` on a freshly opened state, closed afterwards. */
    const withState = async (check: (state: WebhookStateStore) => Promise<void>) => {
      const state = await open();
      try {
        await check(state);
      } finally {
        await state.close();
      }
    };

    it("gives an endpoint's lease to one owner at a time, and to another once it expires", async () => {
      await withState(async (state) => {
        expect(await state.acquireLease(key, "a", 300)).toBe(true);
        expect(await state.acquireLease(key, "b", 300)).toBe(false);
        expect(await state.acquireLease(key, "a", 300)).toBe(true); // renewed
        expect(await state.acquireLease({ ...key, endpoint: "ops" }, "b", 300)).toBe(true);
        await sleep(400);
        expect(await state.acquireLease(key, "b", 300)).toBe(true);
        expect(await state.acquireLease(key, "a", 300)).toBe(false);
        await state.releaseLease(key, "a"); // not a's: nothing happens
        expect(await state.acquireLease(key, "a", 300)).toBe(false);
        await state.releaseLease(key, "b");
        expect(await state.acquireLease(key, "a", 300)).toBe(true);
      });
    });

    it("moves the cursor only for the lease holder", async () => {
      await withState(async (state) => {
        expect(await state.cursor(key)).toBeUndefined();
        expect(await state.acquireLease(key, "a", 5_000)).toBe(true);
        expect(await state.saveCursor(key, "a", "12")).toBe(true);
        expect(await state.saveCursor(key, "b", "99")).toBe(false);
        expect(await state.cursor(key)).toBe("12");
      });
    });

    it("remembers the URL a 410 disabled, until cleared", async () => {
      await withState(async (state) => {
        expect(await state.disabledUrl(key)).toBeUndefined();
        await state.setDisabled(key, "https://hooks.example.com/x");
        expect(await state.disabledUrl(key)).toBe("https://hooks.example.com/x");
        await state.setDisabled(key, undefined);
        expect(await state.disabledUrl(key)).toBeUndefined();
      });
    });

    it("keeps failed deliveries, lists them oldest first, marks and removes replays", async () => {
      const failed = (webhookId: string, endpoint: string, failedAt: number): FailedDelivery => ({
        webhookId,
        tenant: "acme",
        endpoint,
        body: `{"id":"${webhookId}"}`,
        eventCount: 1,
        firstAttemptAt: failedAt - 1_000,
        failedAt,
        attempts: 3,
        lastError: "500",
        replayRequested: false,
      });
      await withState(async (state) => {
        await state.addFailed(failed("msg_2", "crm", 2_000));
        await state.addFailed(failed("msg_1", "crm", 1_000));
        await state.addFailed(failed("msg_3", "ops", 3_000));
        expect((await state.listFailed("acme", undefined, 10)).map((f) => f.webhookId)).toEqual([
          "msg_1",
          "msg_2",
          "msg_3",
        ]);
        expect((await state.listFailed("acme", "crm", 1)).map((f) => f.webhookId)).toEqual([
          "msg_1",
        ]);
        expect(await state.listFailed("other", undefined, 10)).toEqual([]);
        expect(await state.replays(key, 10)).toEqual([]);
        expect(await state.requestReplay(key, ["msg_2", "msg_9"])).toBe(1);
        expect(await state.replays(key, 10)).toEqual([
          { ...failed("msg_2", "crm", 2_000), replayRequested: true },
        ]);
        expect(await state.requestReplay(key, [])).toBe(2);
        expect((await state.replays(key, 10)).map((f) => f.webhookId)).toEqual(["msg_1", "msg_2"]);
        await state.removeFailed(key, "msg_1");
        expect((await state.replays(key, 10)).map((f) => f.webhookId)).toEqual(["msg_2"]);
        expect((await state.listFailed("acme", undefined, 10)).map((f) => f.webhookId)).toEqual([
          "msg_2",
          "msg_3",
        ]);
      });
    });
    it("prunes failed deliveries older than a time, oldest first, in chunks", async () => {
      const failedAt = (webhookId: string, endpoint: string, at: number): FailedDelivery => ({
        webhookId,
        tenant: "prune",
        endpoint,
        body: "{}",
        eventCount: 1,
        firstAttemptAt: at - 1,
        failedAt: at,
        attempts: 1,
        lastError: "timeout",
        replayRequested: endpoint === "crm",
      });
      await withState(async (state) => {
        for (const [id, endpoint, at] of [
          ["old_1", "crm", 100],
          ["old_2", "ops", 200],
          ["old_3", "crm", 300],
          ["new_1", "crm", 400],
        ] as const) {
          await state.addFailed(failedAt(id, endpoint, at));
        }
        await state.addFailed({ ...failedAt("other", "crm", 1), tenant: "acme-other" });
        expect(await state.pruneFailed("prune", 400, 2)).toBe(2);
        expect(await state.pruneFailed("prune", 400, 2)).toBe(1);
        expect(await state.pruneFailed("prune", 400, 2)).toBe(0);
        expect((await state.listFailed("prune", undefined, 10)).map((f) => f.webhookId)).toEqual([
          "new_1",
        ]);
        // A pruned delivery is no longer waiting to be replayed either.
        expect(
          (await state.replays({ tenant: "prune", endpoint: "crm" }, 10)).map((f) => f.webhookId),
        ).toEqual(["new_1"]);
        expect(await state.listFailed("acme-other", undefined, 10)).toHaveLength(1);
      });
    });
  });
}

/** Without an offline queue, a Redis-backed state fails commands until its connection is up. */
export async function untilAnswering(state: WebhookStateStore): Promise<void> {
  const probe = { tenant: "-", endpoint: "-" };
  for (let i = 0; i < 100; i++) {
    if (
      await state.cursor(probe).then(
        () => true,
        () => false,
      )
    )
      return;
    await sleep(20);
  }
}
