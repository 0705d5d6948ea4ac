import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import { ConversationType, ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { buildService, startBuiltService } from "./support/built-service.js";
import { minutes } from "./support/fixtures.js";

describe("the service as a process", () => {
  let build: ReturnType<typeof buildService>;
  let dataDir: string;
  beforeAll(() => {
    build = buildService("process");
    dataDir = mkdtempSync(join(tmpdir(), "receipts-process-"));
  }, 120_000);
  afterAll(() => {
    build?.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const startProcess = (env: Record<string, string>) => startBuiltService(build.dir, env);

  it("keeps every acknowledged receipt across a SIGTERM restart, exiting 0", async () => {
    const first = await startProcess({ RECEIPTS_DATA_DIR: dataDir });
    const connect = (port: number) => createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` });
    const before = createClient(ReadReceiptService, connect(first.port));
    await createClient(MembershipService, connect(first.port)).addMembers({
      groupId: "g",
      userIds: ["s", "a", "b", "c"],
      joinedAt: timestampFromMs(minutes(0)),
    });
    await before.trackMessages({
      messages: [
        {
          conversationId: "g",
          conversationType: ConversationType.GROUP,
          messageId: "m",
          senderId: "s",
          sentAt: timestampFromMs(minutes(1)),
        },
      ],
    });
    await before.sendReceipts({ conversationId: "g", readerId: "a", messageIds: ["m"] });
    await before.sendReceipts({ conversationId: "g", readerId: "b", messageIds: ["m"] });
    first.child.kill("SIGTERM");
    const [code] = await once(first.child, "exit");
    expect(code).toBe(0);

    const second = await startProcess({ RECEIPTS_DATA_DIR: dataDir });
    try {
      const after = createClient(ReadReceiptService, connect(second.port));
      const got = await after.getReceipts({ conversationId: "g", messageIds: ["m"] });
      expect(got.receipts[0]).toMatchObject({ readCount: 2, unreadCount: 1 });
    } finally {
      second.child.kill("SIGTERM");
      await once(second.child, "exit");
    }
  });

  /** Sends `requests` as raw text, one connection each; each must get a NOT_FOUND answer. */
  async function answersNotFound(requests: readonly string[]): Promise<void> {
    const service = await startProcess({ RECEIPTS_DATA_DIR: mkdtempSync(join(dataDir, "raw-")) });
    try {
      for (const text of requests) {
        const socket = connect(service.port, "127.0.0.1");
        socket.end(text);
        let answer = "";
        for await (const chunk of socket) answer += String(chunk);
        expect(answer).toMatch(/^HTTP\/1\.1 404 /);
        expect(answer).toContain('"code":"not_found"');
      }
      const health = await fetch(`http://127.0.0.1:${service.port}/healthz`);
      expect(health.status).toBe(200);
      expect(service.child.exitCode).toBeNull();
    } finally {
      service.child.kill("SIGTERM");
      await once(service.child, "exit");
    }
  }
  const getReceipts = '{"conversationId":"g","messageIds":["m"]}';

  it("answers an HTTP/1.0 call that names no host, and keeps serving", async () => {
    // HTTP/1.0 needs no Host header; the adapter we used before threw on one, and the
    // process died of the uncaught exception.
    await answersNotFound([
      "POST /receipts.v1.ReadReceiptService/GetReceipts HTTP/1.0\r\n" +
        `Content-Type: application/json\r\nContent-Length: ${getReceipts.length}\r\n\r\n` +
        getReceipts,
    ]);
  });

  it("answers a Connect GET whose Host names no host, and keeps serving", async () => {
    // connect-node's helper threw on such a Host, in the request listener: the process died.
    const query = `connect=v1&encoding=json&message=${encodeURIComponent(getReceipts)}`;
    await answersNotFound(
      ["a b", "[1:2:3]"].map(
        (host) =>
          `GET /receipts.v1.ReadReceiptService/GetReceipts?${query} HTTP/1.1\r\n` +
          `Host: ${host}\r\nConnection: close\r\n\r\n`,
      ),
    );
  });

  it("refuses to start on bad configuration, naming every bad variable", async () => {
    const failed = startProcess({
      RECEIPTS_PORT: "99999",
      RECEIPTS_LOG_LEVEL: "loud",
      RECEIPTS_DATA_DIR: dataDir,
    });
    await expect(failed).rejects.toThrow(
      /exited with 2.*RECEIPTS_PORT=99999.*\n.*RECEIPTS_LOG_LEVEL=loud/s,
    );
  });
});
