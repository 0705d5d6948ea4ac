import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import { ConversationType, ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { UserDataService } from "../gen/receipts/v1/user_data_pb.js";
import {
  bearer,
  expectCode,
  mintToken,
  newApiKey,
  secretBytes,
  uniqueTenant,
} from "./support/auth-fixtures.js";
import { fieldAtFault } from "./support/error-details.js";
import { minutes } from "./support/fixtures.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/**
 * UserDataService over the network: who may erase and export (issue #16: erasure is
 * service-only, a user exports its own data only), bad input naming the field, the answers'
 * shape, and tenants kept apart (the same user id in two tenants).
 */
const a = { id: uniqueTenant("acme"), key: newApiKey(), secret: newApiKey() };
const b = { id: uniqueTenant("globex"), key: newApiKey(), secret: newApiKey() };
let server: TestServer;

const clients = (protocol: "connect" | "grpc" = "connect") => {
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl: server.baseUrl })
      : createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" });
  return {
    receipts: createClient(ReadReceiptService, transport),
    membership: createClient(MembershipService, transport),
    userData: createClient(UserDataService, transport),
  };
};
const userToken = (tenant: typeof a, sub: string) =>
  mintToken({ tenant: tenant.id, sub, key: secretBytes(tenant.secret) });

beforeAll(async () => {
  server = await startTestServer({
    RECEIPTS_TENANTS: JSON.stringify({
      tenants: [a, b].map((t) => ({
        id: t.id,
        apiKeys: [t.key],
        userTokens: { keys: [{ alg: "HS256", secret: t.secret }] },
      })),
    }),
  });
  // The same ids in both tenants.
  for (const tenant of [a, b]) {
    const { receipts, membership } = clients();
    const service = bearer(tenant.key);
    await membership.addMembers(
      { groupId: "g", userIds: ["s", "u", "v"], joinedAt: timestampFromMs(minutes(0)) },
      service,
    );
    await receipts.trackMessages(
      {
        messages: [
          {
            conversationId: "g",
            conversationType: ConversationType.GROUP,
            messageId: "m1",
            senderId: "s",
            sentAt: timestampFromMs(minutes(1)),
          },
        ],
      },
      service,
    );
    await receipts.sendReceipts(
      { conversationId: "g", readerId: "u", messageIds: ["m1"] },
      service,
    );
    await receipts.sendReceipts(
      { conversationId: "g", readerId: "v", messageIds: ["m1"] },
      service,
    );
  }
});
afterAll(async () => {
  await server?.stop();
});

const exported = async (credential: string, userId: string) => {
  const records = [];
  for await (const record of clients().userData.exportUserData({ userId }, bearer(credential))) {
    records.push(record);
  }
  return records;
};

describe("UserDataService over the network", () => {
  it("lets a user export its own data only, and the service anyone's", async () => {
    const u = await userToken(a, "u");
    const own = await exported(u, "");
    expect(own.map((r) => r.record.case).sort()).toEqual(["membership", "receipt"]);
    const receipt = own.find((r) => r.record.case === "receipt")?.record.value;
    expect(receipt).toMatchObject({ conversationId: "g", messageId: "m1" });
    const membership = own.find((r) => r.record.case === "membership")?.record;
    const joinedAt = membership?.case === "membership" ? membership.value.joinedAt : undefined;
    expect(joinedAt && timestampMs(joinedAt)).toBe(minutes(0));
    expect(await exported(u, "u")).toEqual(own);
    const refused = await expectCode(exported(u, "v"), Code.PermissionDenied);
    expect(fieldAtFault(refused)).toBe("user_id");
    expect((await exported(a.key, "v")).length).toBe(2);
  });

  it("erases for the service only: a user credential is PERMISSION_DENIED and nothing changes", async () => {
    const u = await userToken(a, "u");
    await expectCode(
      clients().userData.eraseUser({ userId: "u" }, bearer(u)),
      Code.PermissionDenied,
    );
    expect((await exported(a.key, "u")).length).toBe(2);
  });

  it("names the field of bad input", async () => {
    for (const protocol of ["connect", "grpc"] as const) {
      const bad = await expectCode(
        clients(protocol).userData.eraseUser({ userId: "" }, bearer(a.key)),
        Code.InvalidArgument,
      );
      expect(fieldAtFault(bad)).toBe("user_id");
      const tooLong = await expectCode(
        clients(protocol).userData.eraseUser({ userId: "x".repeat(10_000) }, bearer(a.key)),
        Code.InvalidArgument,
      );
      expect(fieldAtFault(tooLong)).toBe("user_id");
    }
    const badExport = await expectCode(exported(a.key, "\u0001"), Code.InvalidArgument);
    expect(fieldAtFault(badExport)).toBe("user_id");
  });

  it("erases in the caller's tenant only, says how much it removed, and the counts stay exact", async () => {
    const { userData, receipts } = clients("grpc");
    const answer = await userData.eraseUser({ userId: "u" }, bearer(a.key));
    expect(answer).toMatchObject({
      done: true,
      step: "",
      removed: {
        horizons: 0,
        horizon_set_times: 0,
        receipts: 1,
        memberships: 1,
        messages_pseudonymised: 0,
        index_entries: 0,
      },
    });
    expect(answer.finishedAt).toBeDefined();
    expect(await exported(a.key, "u")).toEqual([]);
    const inA = await receipts.getReceipts(
      { conversationId: "g", messageIds: ["m1"] },
      bearer(a.key),
    );
    expect(inA.receipts[0]).toMatchObject({ readCount: 1, unreadCount: 0 });
    const inB = await receipts.getReceipts(
      { conversationId: "g", messageIds: ["m1"] },
      bearer(b.key),
    );
    expect(inB.receipts[0]).toMatchObject({ readCount: 2, unreadCount: 0 });
    expect((await exported(b.key, "u")).length).toBe(2);
    // Again: done at once, the same totals.
    expect(await userData.eraseUser({ userId: "u" }, bearer(a.key))).toMatchObject({
      done: true,
      removed: answer.removed,
    });
  });
});
