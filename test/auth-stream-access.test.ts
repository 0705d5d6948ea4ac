import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import {
  ConversationType,
  ReadReceiptService,
  type WatchReceiptsResponse,
} from "../gen/receipts/v1/receipts_pb.js";
import {
  bearer,
  mintToken,
  newApiKey,
  secretBytes,
  uniqueTenant,
} from "./support/auth-fixtures.js";
import { createTestKeyspace } from "./support/cassandra-test-keyspace.js";
import { minutes } from "./support/fixtures.js";
import { deleteKeys, uniquePrefix } from "./support/shared-redis.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

/**
 * An open WatchReceipts ends when the access that opened it ends: a revoked API key or a
 * removed token key (within the tenants file's poll interval), the user token's expiry (its
 * exp plus the 30-s clock tolerance of the check), the user leaving a watched group (at once
 * through the instance holding the stream, within RECEIPTS_WATCH_ACCESS_CHECK_SECONDS through
 * another). Over gRPC and Connect, against real servers.
 */

const pollSeconds = 1;
/** Reload detection (one poll), the reload itself, and a loaded test machine. */
const reloadBoundMs = pollSeconds * 1000 + 2_500;
const toleranceMs = 30_000;

const transports: Record<string, (baseUrl: string) => Transport> = {
  gRPC: (baseUrl) => createGrpcTransport({ baseUrl }),
  "Connect over HTTP/1.1": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" }),
};

interface Followed {
  readonly messages: WatchReceiptsResponse[];
  /** Resolves with the first message. */
  readonly first: Promise<void>;
  /** Resolves when the stream ended: its error (undefined for OK) and when. */
  readonly ended: Promise<{ error: ConnectError | undefined; at: number }>;
  readonly stop: () => void;
}

function watch(
  transport: Transport,
  request: { conversationIds: string[]; resumeToken?: string },
  credential: string,
): Followed {
  const abort = new AbortController();
  const messages: WatchReceiptsResponse[] = [];
  let arrived = () => {};
  const first = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  const stream = createClient(ReadReceiptService, transport).watchReceipts(request, {
    ...bearer(credential),
    signal: abort.signal,
  });
  const ended = (async () => {
    try {
      for await (const message of stream) {
        messages.push(message);
        arrived();
      }
      return { error: undefined, at: Date.now() };
    } catch (reason) {
      arrived();
      return { error: ConnectError.from(reason), at: Date.now() };
    }
  })();
  return { messages, first, ended, stop: () => abort.abort() };
}

async function expectEnded(
  followed: Followed,
  code: Code,
  withinMs: number,
): Promise<{ error: ConnectError; at: number }> {
  const outcome = await Promise.race([
    followed.ended,
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), withinMs)),
  ]);
  expect(outcome, `the stream is still open after ${withinMs} ms`).toBeDefined();
  const error = outcome?.error;
  expect(error, "the stream ended without an error").toBeInstanceOf(ConnectError);
  expect(Code[error?.code ?? Code.Unknown], error?.rawMessage).toBe(Code[code]);
  return { error: error as ConnectError, at: outcome?.at ?? 0 };
}

const stillOpen = async (followed: Followed, ms: number): Promise<boolean> =>
  (await Promise.race([
    followed.ended.then(() => false),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(true), ms)),
  ])) === true;

describe("streams end when credentials end (tenants file, embedded store)", () => {
  const dir = mkdtempSync(join(tmpdir(), "receipts-stream-access-"));
  const file = join(dir, "tenants.json");
  const tenant = uniqueTenant("access");
  const serviceKey = newApiKey();
  const tokenSecret = newApiKey();
  const state = {
    apiKeys: [serviceKey],
    tokenKeys: [{ alg: "HS256", kid: "main", secret: tokenSecret }],
  };
  let server: TestServer;

  const writeTenants = () =>
    writeFileSync(
      file,
      JSON.stringify({
        tenants: [
          {
            id: tenant,
            apiKeys: state.apiKeys,
            userTokens: { keys: state.tokenKeys },
            limits: {
              tenantRequestsPerSecond: 100_000,
              tenantBurst: 100_000,
              userRequestsPerSecond: 100_000,
              userBurst: 100_000,
            },
          },
        ],
      }),
    );

  const service = () => createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" });

  /** Waits until the reloaded file accepts `credential` (a GetReceipts call is served). */
  async function acceptedSoon(credential: string): Promise<void> {
    const client = createClient(ReadReceiptService, service());
    for (let i = 0; i < 100; i++) {
      const served = await client
        .getReceipts({ conversationId: "g", messageIds: ["m1"] }, bearer(credential))
        .then(
          () => true,
          (reason: unknown) => ConnectError.from(reason).code !== Code.Unauthenticated,
        );
      if (served) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error("the new credential was never accepted");
  }

  beforeAll(async () => {
    writeTenants();
    server = await startTestServer({
      RECEIPTS_TENANTS_FILE: file,
      RECEIPTS_TENANTS_POLL_SECONDS: String(pollSeconds),
      // Only a removal through this instance can end a stream quickly in this suite.
      RECEIPTS_WATCH_ACCESS_CHECK_SECONDS: "3600",
    });
    await createClient(MembershipService, service()).addMembers(
      { groupId: "g", userIds: ["s", "alice", "bob"], joinedAt: timestampFromMs(minutes(0)) },
      bearer(serviceKey),
    );
    await createClient(ReadReceiptService, service()).trackMessages(
      {
        messages: ["m1", "m2", "m3", "m4"].map((messageId, i) => ({
          conversationId: "g",
          conversationType: ConversationType.GROUP,
          messageId,
          senderId: "s",
          sentAt: timestampFromMs(minutes(1 + i)),
        })),
      },
      bearer(serviceKey),
    );
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [name, transportOf] of Object.entries(transports)) {
    describe(name, () => {
      it("ends a stream whose API key is revoked with UNAUTHENTICATED and a resume token that a valid key resumes from", async () => {
        const revokedKey = newApiKey();
        state.apiKeys = [serviceKey, revokedKey];
        writeTenants();
        await acceptedSoon(revokedKey);
        const followed = watch(transportOf(server.baseUrl), { conversationIds: ["g"] }, revokedKey);
        try {
          await followed.first;
          expect(followed.messages[0]?.update.case).toBe("heartbeat");
          state.apiKeys = [serviceKey];
          const revokedAt = Date.now();
          writeTenants();
          const { error, at } = await expectEnded(followed, Code.Unauthenticated, reloadBoundMs);
          expect(at - revokedAt).toBeLessThanOrEqual(reloadBoundMs);
          const resumeToken = error.metadata.get("resume-token") ?? "";
          expect(resumeToken).not.toBe("");

          // What happened after the stream ended reaches the caller that resumes with a valid key.
          const messageId = name === "gRPC" ? "m1" : "m2";
          await createClient(ReadReceiptService, service()).sendReceipts(
            { conversationId: "g", readerId: "bob", messageIds: [messageId] },
            bearer(serviceKey),
          );
          const resumed = watch(
            transportOf(server.baseUrl),
            { conversationIds: ["g"], resumeToken },
            serviceKey,
          );
          try {
            await resumed.first;
            expect(resumed.messages[0]?.update).toMatchObject({
              case: "receipt",
              value: { readerId: "bob", receipt: { messageId } },
            });
          } finally {
            resumed.stop();
          }
        } finally {
          followed.stop();
        }
      });

      it("ends a user's stream when the key that signed their token is removed", async () => {
        const kid = `k-${randomUUID().slice(0, 8)}`;
        const secret = newApiKey();
        state.tokenKeys = [
          { alg: "HS256", kid: "main", secret: tokenSecret },
          { alg: "HS256", kid, secret },
        ];
        writeTenants();
        const token = await mintToken({ tenant, sub: "alice", key: secretBytes(secret), kid });
        await acceptedSoon(token);
        const followed = watch(transportOf(server.baseUrl), { conversationIds: ["g"] }, token);
        // Bob's stream, signed with a key that stays, goes on.
        const bobs = watch(
          transportOf(server.baseUrl),
          { conversationIds: ["g"] },
          await mintToken({ tenant, sub: "bob", key: secretBytes(tokenSecret), kid: "main" }),
        );
        try {
          await followed.first;
          await bobs.first;
          state.tokenKeys = [{ alg: "HS256", kid: "main", secret: tokenSecret }];
          const removedAt = Date.now();
          writeTenants();
          const { error, at } = await expectEnded(followed, Code.Unauthenticated, reloadBoundMs);
          expect(at - removedAt).toBeLessThanOrEqual(reloadBoundMs);
          expect(error.metadata.get("resume-token") ?? "").not.toBe("");
          expect(await stillOpen(bobs, 200)).toBe(true);
        } finally {
          followed.stop();
          bobs.stop();
        }
      });

      it("ends a user's stream when their token expires (exp plus the clock tolerance), not before", async () => {
        // Accepted thanks to the 30-s tolerance, so it stops verifying about 3 s from now.
        const token = await mintToken({
          tenant,
          sub: "alice",
          key: secretBytes(tokenSecret),
          kid: "main",
          expiresIn: -27,
          issuedAt: -60,
        });
        const expiresAt = (decodeJwt(token).exp ?? 0) * 1000 + toleranceMs;
        const followed = watch(transportOf(server.baseUrl), { conversationIds: ["g"] }, token);
        try {
          await followed.first;
          expect(followed.messages[0]?.update.case).toBe("heartbeat");
          const { error, at } = await expectEnded(
            followed,
            Code.Unauthenticated,
            expiresAt - Date.now() + 1_500,
          );
          expect(at).toBeGreaterThanOrEqual(expiresAt - 50);
          expect(at).toBeLessThanOrEqual(expiresAt + 1_500);
          expect(error.rawMessage).toMatch(/expired/);
          expect(error.metadata.get("resume-token") ?? "").not.toBe("");
        } finally {
          followed.stop();
        }
      });

      it("ends a user's stream at once with PERMISSION_DENIED when they are removed from a group it watches", async () => {
        const leaver = `leaver-${randomUUID().slice(0, 8)}`;
        await createClient(MembershipService, service()).addMembers(
          { groupId: "g", userIds: [leaver], joinedAt: timestampFromMs(minutes(0)) },
          bearer(serviceKey),
        );
        const userToken = (sub: string) =>
          mintToken({ tenant, sub, key: secretBytes(tokenSecret), kid: "main" });
        const followed = watch(
          transportOf(server.baseUrl),
          { conversationIds: ["g"] },
          await userToken(leaver),
        );
        const bobs = watch(
          transportOf(server.baseUrl),
          { conversationIds: ["g"] },
          await userToken("bob"),
        );
        try {
          await followed.first;
          await bobs.first;
          const removedAt = Date.now();
          await createClient(MembershipService, service()).removeMembers(
            { groupId: "g", userIds: [leaver], leftAt: timestampFromMs(Date.now()) },
            bearer(serviceKey),
          );
          const { error, at } = await expectEnded(followed, Code.PermissionDenied, 1_500);
          expect(at - removedAt).toBeLessThan(1_500);
          expect(error.rawMessage).toMatch(/conversation_ids\[0\]: the caller left/);
          // The same request would be refused: nothing to resume.
          expect(error.metadata.get("resume-token")).toBeNull();
          expect(await stillOpen(bobs, 200)).toBe(true);
        } finally {
          followed.stop();
          bobs.stop();
        }
      });
    });
  }
});

describe("streams end when their user leaves through another instance (Cassandra + Redis)", () => {
  const tenant = uniqueTenant("leave");
  const serviceKey = newApiKey();
  const tokenSecret = newApiKey();
  const prefix = uniquePrefix("stream-access");
  const checkSeconds = 1;
  let keyspace: Awaited<ReturnType<typeof createTestKeyspace>>;
  let holding: TestServer;
  let other: TestServer;

  beforeAll(async () => {
    keyspace = await createTestKeyspace();
    const env = {
      RECEIPTS_STORE: "cassandra",
      RECEIPTS_CASSANDRA_KEYSPACE: keyspace.keyspace,
      RECEIPTS_REDIS_KEY_PREFIX: prefix,
      RECEIPTS_WATCH_ACCESS_CHECK_SECONDS: String(checkSeconds),
      RECEIPTS_TENANTS: JSON.stringify({
        tenants: [
          {
            id: tenant,
            apiKeys: [serviceKey],
            userTokens: { keys: [{ alg: "HS256", secret: tokenSecret }] },
          },
        ],
      }),
    };
    holding = await startTestServer(env);
    other = await startTestServer(env);
  });
  afterAll(async () => {
    await holding?.stop();
    await other?.stop();
    await keyspace?.drop();
    await deleteKeys(prefix);
  });

  for (const [name, transportOf] of Object.entries(transports)) {
    it(`${name}: ends the stream with PERMISSION_DENIED within the re-check interval`, async () => {
      const groupId = `g-${randomUUID().slice(0, 8)}`;
      const viaOther = createConnectTransport({ baseUrl: other.baseUrl, httpVersion: "1.1" });
      await createClient(MembershipService, viaOther).addMembers(
        { groupId, userIds: ["s", "alice", "bob"], joinedAt: timestampFromMs(minutes(0)) },
        bearer(serviceKey),
      );
      const userToken = (sub: string) => mintToken({ tenant, sub, key: secretBytes(tokenSecret) });
      const followed = watch(
        transportOf(holding.baseUrl),
        { conversationIds: [groupId] },
        await userToken("alice"),
      );
      const bobs = watch(
        transportOf(holding.baseUrl),
        { conversationIds: [groupId] },
        await userToken("bob"),
      );
      try {
        await followed.first;
        await bobs.first;
        expect(followed.messages[0]?.update.case).toBe("heartbeat");
        const removedAt = Date.now();
        await createClient(MembershipService, viaOther).removeMembers(
          { groupId, userIds: ["alice"], leftAt: timestampFromMs(Date.now()) },
          bearer(serviceKey),
        );
        const boundMs = checkSeconds * 1000 + 2_000;
        const { error, at } = await expectEnded(followed, Code.PermissionDenied, boundMs);
        expect(at - removedAt).toBeLessThanOrEqual(boundMs);
        expect(error.metadata.get("resume-token")).toBeNull();
        expect(await stillOpen(bobs, 200)).toBe(true);
      } finally {
        followed.stop();
        bobs.stop();
      }
    });
  }
});
