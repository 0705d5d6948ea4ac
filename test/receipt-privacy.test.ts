import { describe, expect, it } from "vitest";
import {
  defaultTenantPrivacy,
  ReceiptPrivacy,
  type TenantPrivacy,
} from "../src/domain/receipt-privacy.js";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteReceiptStore } from "../src/store/sqlite/sqlite-receipt-store.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";

/** The privacy decision's cache: what keeps SendReceipts from reading settings on every call. */
describe("ReceiptPrivacy", () => {
  const open = (tenantPrivacy: TenantPrivacy = defaultTenantPrivacy) => {
    const db = openSqliteDatabase(":memory:");
    const store = new SqliteReceiptStore(db, new SqliteWriteBatcher(db));
    let reads = 0;
    let now = 0;
    const counted = {
      getConversation: store.getConversation.bind(store),
      getReceiptSettings: (tenant: string, userId: string) => {
        reads++;
        return store.getReceiptSettings(tenant, userId);
      },
    };
    const privacy = new ReceiptPrivacy({
      store: counted,
      privacyOf: () => tenantPrivacy,
      cacheTtlMs: 1_000,
      clock: () => now,
    });
    return {
      store,
      privacy,
      reads: () => reads,
      advance: (ms: number) => {
        now += ms;
      },
    };
  };
  const group = { conversationId: "g", type: "group" as const };

  it("reads a user's settings once per TTL, and at once again after forget", async () => {
    const { store, privacy, reads, advance } = open();
    expect(await privacy.hides("t", "bob", group)).toBe(false);
    await Promise.all([1, 2, 3].map(() => privacy.hides("t", "bob", group)));
    expect(reads()).toBe(1);
    await store.putReceiptSettings("t", "bob", [{ conversationId: "", visibility: "private" }]);
    // Another instance's change: seen once the TTL has passed.
    expect(await privacy.hides("t", "bob", group)).toBe(false);
    advance(1_001);
    expect(await privacy.hides("t", "bob", group)).toBe(true);
    expect(reads()).toBe(2);
    // This instance's change: seen at once.
    await store.putReceiptSettings("t", "bob", [{ conversationId: "g", visibility: "shared" }]);
    privacy.forget("t", "bob");
    expect(await privacy.hides("t", "bob", group)).toBe(false);
    expect(reads()).toBe(3);
    // Per (tenant, user).
    expect(await privacy.hides("t2", "bob", group)).toBe(false);
    expect(reads()).toBe(4);
  });

  it("decides by an 'always' or 'never' policy without reading any setting", async () => {
    const { privacy, reads } = open({
      ...defaultTenantPrivacy,
      policy: { c2c: "never", group: "always" },
    });
    expect(await privacy.hides("t", "bob", group)).toBe(false);
    expect(await privacy.hides("t", "bob", { conversationId: "c", type: "c2c" })).toBe(true);
    expect(reads()).toBe(0);
  });
});
