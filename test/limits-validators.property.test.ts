import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type CallOptions, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MessageLifecycleService } from "../gen/receipts/v1/lifecycle_pb.js";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import { PrivacyService } from "../gen/receipts/v1/privacy_pb.js";
import {
  ConversationType,
  ReadFilter,
  ReadReceiptService,
} from "../gen/receipts/v1/receipts_pb.js";
import {
  bearer,
  mintToken,
  newApiKey,
  secretBytes,
  uniqueTenant,
} from "./support/auth-fixtures.js";
import { fieldAtFault } from "./support/error-details.js";
import { minutes } from "./support/fixtures.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/**
 * The request validators, over the network: random requests with at least one malformed field,
 * from random callers through gRPC and Connect, are refused with a client error (INVALID_ARGUMENT
 * names the field), never INTERNAL; random bytes never bring the server down; and none of it
 * changes a single stored row.
 */

const tenant = { id: uniqueTenant("fuzz"), key: newApiKey(), secret: newApiKey() };
let server: TestServer;
let userTokens: Record<string, string>;

beforeAll(async () => {
  server = await startTestServer({
    RECEIPTS_TENANTS: JSON.stringify({
      tenants: [
        {
          id: tenant.id,
          apiKeys: [tenant.key],
          userTokens: { keys: [{ alg: "HS256", secret: tenant.secret }] },
          limits: { tenantBurst: 1_000_000, userBurst: 1_000_000, userRequestsPerSecond: 100_000 },
        },
      ],
    }),
  });
  userTokens = Object.fromEntries(
    await Promise.all(
      ["s", "a", "b", "outsider"].map(
        async (sub) =>
          [
            sub,
            await mintToken({ tenant: tenant.id, sub, key: secretBytes(tenant.secret) }),
          ] as const,
      ),
    ),
  );
  const transport = createGrpcTransport({ baseUrl: server.baseUrl });
  const service = bearer(tenant.key);
  await createClient(MembershipService, transport).addMembers(
    { groupId: "g", userIds: ["s", "a", "b"], joinedAt: timestampFromMs(minutes(0)) },
    service,
  );
  const receipts = createClient(ReadReceiptService, transport);
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
        {
          conversationId: "d",
          conversationType: ConversationType.C2C,
          messageId: "m2",
          senderId: "s",
          receiverId: "a",
          sentAt: timestampFromMs(minutes(2)),
        },
      ],
    },
    service,
  );
  await receipts.sendReceipts({ conversationId: "g", readerId: "b", messageIds: ["m1"] }, service);
});
afterAll(async () => {
  await server?.stop();
});

/** Every row of every table of the embedded store, read from its file. */
function storedRows(): string {
  const db = new DatabaseSync(join(server.dataDir, "receipts.db"), { readOnly: true });
  try {
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all() as { name: string }[];
    return JSON.stringify(
      tables.map(({ name }) => [name, db.prepare(`SELECT * FROM "${name}" ORDER BY 1`).all()]),
      (_, value: unknown) => (typeof value === "bigint" ? value.toString() : value),
    );
  } finally {
    db.close();
  }
}

// --- generators -----------------------------------------------------------------------------

const goodId: fc.Arbitrary<string> = fc.constantFrom("g", "d", "m1", "m2", "s", "a", "b", "zz");
const controlCharacter = fc
  .integer({ min: 0, max: 32 })
  .map((code) => String.fromCharCode(code === 32 ? 0x7f : code));
/** A non-empty id that no validator may accept: too long, or with a control character. */
const badNonEmptyId = fc.oneof(
  fc.string({ minLength: 129, maxLength: 300 }),
  fc
    .tuple(fc.string({ maxLength: 10 }), controlCharacter, fc.string({ maxLength: 10 }))
    .map(([before, control, after]) => before + control + after),
);
const badId = fc.oneof(fc.constant(""), badNonEmptyId);
/** A list of ids with one bad at a random place, or too many, or none. */
const badIdList = (max: number) =>
  fc.oneof(
    fc
      .tuple(fc.array(goodId, { maxLength: 5 }), badId, fc.nat())
      .map(([ids, bad, at]) => ids.toSpliced(at % (ids.length + 1), 0, bad)),
    fc.constant(Array.from({ length: max + 1 }, (_, i) => `id${i}`)),
    fc.constant<string[]>([]),
  );
const badTime = fc.oneof(
  fc
    .integer({ min: -1_000_000_000, max: -1 })
    .map((seconds) => ({ seconds: BigInt(seconds), nanos: 0 })),
  fc.constant({ seconds: 10n ** 15n, nanos: 0 }),
);
const futureTime = fc
  .integer({ min: 3_600, max: 1_000_000 })
  .map((ahead) => timestampFromMs(Date.now() + ahead * 1000));
const garbageToken = fc.oneof(
  fc.string({ minLength: 1, maxLength: 80 }),
  fc.constant(
    Buffer.from(JSON.stringify({ v: 1, s: "members/other", k: "x" })).toString("base64url"),
  ),
);

type Clients = {
  receipts: ReturnType<typeof createClient<typeof ReadReceiptService>>;
  members: ReturnType<typeof createClient<typeof MembershipService>>;
};
interface Malformed {
  readonly rpc: string;
  readonly request: unknown;
  readonly call: (c: Clients, options: CallOptions) => Promise<unknown>;
}

const malformed = <T>(
  rpc: string,
  request: fc.Arbitrary<T>,
  call: (c: Clients, request: T, options: CallOptions) => Promise<unknown>,
): fc.Arbitrary<Malformed> =>
  request.map((r) => ({ rpc, request: r, call: (c, options) => call(c, r, options) }));

interface MessageInput {
  readonly conversationId: string;
  readonly conversationType: ConversationType;
  readonly messageId: string;
  readonly senderId: string;
  readonly receiverId: string;
  readonly sentAt: Timestamp | undefined;
}
const trackedMessage: fc.Arbitrary<MessageInput> = fc.record({
  conversationId: goodId,
  conversationType: fc.constantFrom(ConversationType.C2C, ConversationType.GROUP),
  messageId: goodId,
  senderId: fc.constantFrom("s", "a"),
  receiverId: fc.constant("b"),
  sentAt: fc.constant(timestampFromMs(minutes(3)) as Timestamp | undefined),
});
/** One message broken in one of the ways the contract forbids. */
const brokenMessage: fc.Arbitrary<MessageInput> = fc.oneof(
  fc.tuple(trackedMessage, badId).map(([m, id]) => ({ ...m, conversationId: id })),
  fc.tuple(trackedMessage, badId).map(([m, id]) => ({ ...m, messageId: id })),
  fc.tuple(trackedMessage, badId).map(([m, id]) => ({ ...m, senderId: id })),
  fc
    .tuple(trackedMessage, fc.constantFrom(0, 3, 99))
    .map(([m, type]) => ({ ...m, conversationType: type as ConversationType })),
  trackedMessage.map((m) => ({ ...m, sentAt: undefined })),
  fc.tuple(trackedMessage, badTime).map(([m, sentAt]) => ({ ...m, sentAt: sentAt as Timestamp })),
  trackedMessage.map((m) => ({
    ...m,
    conversationType: ConversationType.C2C,
    receiverId: m.senderId,
  })),
  trackedMessage.map((m) => ({ ...m, conversationType: ConversationType.C2C, receiverId: "" })),
  trackedMessage.map((m) => ({ ...m, conversationType: ConversationType.GROUP, receiverId: "b" })),
);

const malformedRequests: fc.Arbitrary<Malformed> = fc.oneof(
  malformed(
    "TrackMessages",
    fc.oneof(
      fc
        .tuple(fc.array(trackedMessage, { maxLength: 3 }), brokenMessage, fc.nat())
        .map(([ok, bad, at]) => ok.toSpliced(at % (ok.length + 1), 0, bad)),
      fc.constant<MessageInput[]>([]),
      trackedMessage.map((m) =>
        Array.from({ length: 1_001 }, (_, i) => ({ ...m, messageId: `bulk${i}` })),
      ),
    ),
    (c, messages, o) => c.receipts.trackMessages({ messages: [...messages] }, o),
  ),
  malformed(
    "SendReceipts",
    fc.oneof(
      fc.record({
        conversationId: badId,
        readerId: goodId,
        messageIds: fc.constant<string[]>(["m1"]),
      }),
      fc.record({
        conversationId: goodId,
        readerId: badNonEmptyId,
        messageIds: fc.constant<string[]>(["m1"]),
      }),
      fc.record({ conversationId: goodId, readerId: goodId, messageIds: badIdList(100) }),
    ),
    (c, r, o) => c.receipts.sendReceipts(r, o),
  ),
  malformed(
    "GetReceipts",
    fc.oneof(
      fc.record({ conversationId: badId, messageIds: fc.constant<string[]>(["m1"]) }),
      fc.record({ conversationId: goodId, messageIds: badIdList(100) }),
    ),
    (c, r, o) => c.receipts.getReceipts(r, o),
  ),
  malformed(
    "ListReadMembers",
    fc.oneof(
      fc.record({ conversationId: badId, messageId: goodId, filter: fc.constant(ReadFilter.READ) }),
      fc.record({ conversationId: goodId, messageId: badId, filter: fc.constant(ReadFilter.READ) }),
      fc.record({
        conversationId: goodId,
        messageId: goodId,
        filter: fc.constantFrom(0, 3, 42).map((f) => f as ReadFilter),
      }),
      fc.record({
        conversationId: fc.constant("g"),
        messageId: fc.constant("m1"),
        filter: fc.constant(ReadFilter.UNREAD),
        pageToken: garbageToken,
        pageSize: fc.nat(),
      }),
    ),
    (c, r, o) => c.receipts.listReadMembers(r, o),
  ),
  malformed(
    "BatchGetReadMembers",
    fc.oneof(
      fc.record({ conversationId: badId, messageIds: fc.constant<string[]>(["m1"]) }),
      fc.record({ conversationId: goodId, messageIds: badIdList(50) }),
    ),
    (c, r, o) => c.receipts.batchGetReadMembers(r, o),
  ),
  malformed(
    "MarkConversationRead",
    fc.oneof(
      fc.record({ conversationId: badId, readerId: goodId }),
      fc.record({ conversationId: goodId, readerId: badNonEmptyId }),
      fc.record({
        conversationId: fc.constantFrom("g", "d"),
        readerId: fc.constantFrom("a", "b"),
        readUpTo: fc.oneof(
          futureTime,
          badTime.map((t) => t as Timestamp),
        ),
      }),
    ),
    (c, r, o) => c.receipts.markConversationRead(r, o),
  ),
  malformed(
    "WatchReceipts",
    fc.oneof(
      fc.record({ conversationIds: badIdList(100).filter((ids) => ids.length > 0) }),
      fc.record({ conversationIds: fc.constant<string[]>(["g"]), senderId: badNonEmptyId }),
      fc.record({ conversationIds: fc.constant<string[]>(["g"]), resumeToken: garbageToken }),
    ),
    async (c, r, o) => {
      for await (const update of c.receipts.watchReceipts(r, o)) return update;
      return undefined;
    },
  ),
  malformed(
    "AddMembers",
    fc.oneof(
      fc.record({ groupId: badId, userIds: fc.constant<string[]>(["x"]) }),
      fc.record({ groupId: fc.constant("g"), userIds: badIdList(1_000) }),
      fc.record({
        groupId: fc.constant("g"),
        userIds: fc.constant<string[]>(["x"]),
        joinedAt: badTime,
      }),
    ),
    (c, r, o) => c.members.addMembers(r as never, o),
  ),
  malformed(
    "RemoveMembers",
    fc.oneof(
      fc.record({ groupId: badId, userIds: fc.constant<string[]>(["a"]) }),
      fc.record({ groupId: fc.constant("g"), userIds: badIdList(1_000) }),
      fc.record({
        groupId: fc.constant("g"),
        userIds: fc.constant<string[]>(["a"]),
        leftAt: badTime,
      }),
    ),
    (c, r, o) => c.members.removeMembers(r as never, o),
  ),
  malformed(
    "ListMembers",
    fc.oneof(
      fc.record({ groupId: badId }),
      fc.record({ groupId: fc.constant("g"), pageToken: garbageToken }),
    ),
    (c, r, o) => c.members.listMembers(r, o),
  ),
);

const refusedCodes = new Set([
  Code.InvalidArgument,
  Code.PermissionDenied,
  Code.NotFound,
  Code.FailedPrecondition,
  Code.ResourceExhausted,
]);

describe("the request validators (property-based, over the network)", () => {
  it("refuse malformed requests of every caller with a client error, naming the field, changing nothing", async () => {
    const before = storedRows();
    const clients: Record<string, Clients> = {};
    for (const [name, transport] of [
      ["gRPC", createGrpcTransport({ baseUrl: server.baseUrl })],
      [
        "Connect binary",
        createConnectTransport({
          baseUrl: server.baseUrl,
          httpVersion: "2",
          useBinaryFormat: true,
        }),
      ],
    ] as const) {
      clients[name] = {
        receipts: createClient(ReadReceiptService, transport),
        members: createClient(MembershipService, transport),
      };
    }
    await fc.assert(
      fc.asyncProperty(
        malformedRequests,
        // The service reaches every validator; users mostly meet the authorization rules first.
        fc.oneof(
          { arbitrary: fc.constant("service"), weight: 3 },
          { arbitrary: fc.constantFrom("s", "a", "b", "outsider"), weight: 2 },
        ),
        fc.constantFrom("gRPC", "Connect binary"),
        async (request, caller, transport) => {
          const credential = caller === "service" ? tenant.key : (userTokens[caller] as string);
          const outcome = await request
            .call(clients[transport] as Clients, bearer(credential))
            .then(
              () => undefined,
              (reason: unknown) => ConnectError.from(reason),
            );
          expect(outcome, `${request.rpc} was accepted`).toBeInstanceOf(ConnectError);
          const error = outcome as ConnectError;
          expect(refusedCodes.has(error.code), `${Code[error.code]}: ${error.rawMessage}`).toBe(
            true,
          );
          if (error.code === Code.InvalidArgument) {
            expect(fieldAtFault(error), error.rawMessage).toBeTruthy();
          }
        },
      ),
      { numRuns: 300 },
    );
    expect(storedRows()).toBe(before);
  });

  it("survive random bytes sent to every procedure in every content type", async () => {
    const before = storedRows();
    const procedures = [
      ...ReadReceiptService.methods.map((m) => `receipts.v1.ReadReceiptService/${m.name}`),
      ...MembershipService.methods.map((m) => `receipts.v1.MembershipService/${m.name}`),
      ...PrivacyService.methods.map((m) => `receipts.v1.PrivacyService/${m.name}`),
      ...MessageLifecycleService.methods.map(
        (m) => `receipts.v1.MessageLifecycleService/${m.name}`,
      ),
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...procedures),
        fc.constantFrom(
          "application/json",
          "application/proto",
          "application/connect+proto",
          "application/grpc-web+proto",
        ),
        fc.uint8Array({ maxLength: 2_048 }),
        async (procedure, contentType, body) => {
          const response = await fetch(`${server.baseUrl}/${procedure}`, {
            method: "POST",
            headers: { "content-type": contentType, authorization: `Bearer ${tenant.key}` },
            body,
          });
          await response.arrayBuffer();
          expect(response.status).toBeGreaterThanOrEqual(200);
        },
      ),
      { numRuns: 150 },
    );
    // Still serving, nothing stored.
    const got = await createClient(
      ReadReceiptService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    ).getReceipts({ conversationId: "g", messageIds: ["m1"] }, bearer(tenant.key));
    expect(got.receipts[0]).toMatchObject({ readCount: 1, unreadCount: 1 });
    expect(storedRows()).toBe(before);
  });
});
