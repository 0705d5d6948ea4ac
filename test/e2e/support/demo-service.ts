import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { MembershipService } from "../../../gen/receipts/v1/membership_pb.js";
import { ConversationType, ReadReceiptService } from "../../../gen/receipts/v1/receipts_pb.js";
import { type DemoTenant, demoTenant } from "../../../scripts/demo.js";
import { startTestServer, type TestServer } from "../../support/test-server.js";

/**
 * The real service in one tenant, restartable on the same port and data dir
 * (or on a fresh data dir), for the web client's parts that run outside the
 * browser too.
 */
export class DemoService {
  readonly tenant: DemoTenant = demoTenant();
  readonly #dirs: string[] = [];
  #server: TestServer | undefined;
  #port = 0;

  get baseUrl(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** The data dir of the service (the latest, after a start with fresh data). */
  get dataDir(): string {
    return this.#dirs.at(-1) ?? "";
  }

  /** `env` adds to (or overrides) the service's variables. */
  async start(options: { freshData?: boolean; env?: Record<string, string> } = {}): Promise<void> {
    if (this.#dirs.length === 0 || options.freshData === true) {
      this.#dirs.push(mkdtempSync(join(tmpdir(), "receipts-web-client-")));
    }
    this.#server = await startTestServer({
      RECEIPTS_PORT: String(this.#port),
      RECEIPTS_DATA_DIR: this.#dirs.at(-1) ?? "",
      RECEIPTS_TENANTS: this.tenant.tenantsJson,
      RECEIPTS_SHUTDOWN_GRACE_SECONDS: "1",
      ...options.env,
    });
    this.#port = this.#server.app.port;
  }

  async stop(): Promise<void> {
    await this.#server?.stop();
    this.#server = undefined;
  }

  async dispose(): Promise<void> {
    await this.stop();
    for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
  }

  /** A client calling with the backend's API key. */
  serviceClient(): Client<typeof ReadReceiptService> {
    return this.clientWith(this.tenant.serviceHeaders.authorization ?? "");
  }

  /** A client calling as one user, with a freshly minted user token. */
  async userClient(userId: string): Promise<Client<typeof ReadReceiptService>> {
    return this.clientWith(`Bearer ${await this.tenant.mintUserToken(userId)}`);
  }

  /** A group of the given members with `count` messages of `senderId`, tracked at fixed times. */
  async seedGroup(options: {
    groupId: string;
    members: readonly string[];
    senderId: string;
    count: number;
    sentFrom?: number;
  }): Promise<string[]> {
    await this.addMembers(options.groupId, options.members, Date.UTC(2026, 0, 1));
    const ids = Array.from({ length: options.count }, (_, i) => `${options.groupId}-${i}`);
    const sentFrom = options.sentFrom ?? Date.UTC(2026, 0, 2);
    await createClient(ReadReceiptService, this.#transport()).trackMessages(
      {
        messages: ids.map((messageId, i) => ({
          conversationId: options.groupId,
          conversationType: ConversationType.GROUP,
          messageId,
          senderId: options.senderId,
          sentAt: timestampFromMs(sentFrom + i * 1000),
        })),
      },
      { headers: this.tenant.serviceHeaders },
    );
    return ids;
  }

  async addMembers(groupId: string, userIds: readonly string[], joinedAt: number): Promise<void> {
    await createClient(MembershipService, this.#transport()).addMembers(
      { groupId, userIds: [...userIds], joinedAt: timestampFromMs(joinedAt) },
      { headers: this.tenant.serviceHeaders },
    );
  }

  #transport() {
    return createConnectTransport({ baseUrl: this.baseUrl, httpVersion: "1.1" });
  }

  clientWith(authorization: string): Client<typeof ReadReceiptService> {
    return createClient(
      ReadReceiptService,
      createConnectTransport({
        baseUrl: this.baseUrl,
        httpVersion: "1.1",
        interceptors: [
          (next) => (request) => {
            request.header.set("authorization", authorization);
            return next(request);
          },
        ],
      }),
    );
  }
}
