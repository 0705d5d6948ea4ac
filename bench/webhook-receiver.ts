import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { nowMs } from "./latency-stats.js";
import { receiptKey } from "./paced-send.js";

interface Payload {
  readonly events: readonly {
    readonly type: string;
    readonly data: {
      readonly receipt?: { readonly messageId?: string };
      readonly readerId?: string;
    };
  }[];
}

/**
 * The tenants' webhook receiver, as a customer would run it: node:http, each POST verified
 * (Standard Webhooks, the tenant's secret, by the path /hooks/<tenant>) before it counts, then
 * answered 204. Records the wall-clock arrival of every receipt.read event, by receipt.
 */
export class BenchWebhookReceiver {
  /** Per receipt (`<message id>/<reader id>`): every arrival, wall clock ms. */
  readonly arrivals = new Map<string, number[]>();
  posts = 0;
  /** POSTs refused: a bad signature, an unknown tenant, a body that is not a webhook. */
  refused = 0;
  firstProblem: string | undefined;
  readonly #verifiers = new Map<string, Webhook>();
  readonly #server: Server;

  constructor() {
    this.#server = createServer((request, response) => this.#handle(request, response));
    // The service keeps its connections; the receiver must not close them between batches.
    this.#server.keepAliveTimeout = 60_000;
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(0, "127.0.0.1", () => resolve());
    });
    return this;
  }

  /** The URL of a tenant's endpoint, and the secret it signs with. */
  endpointFor(tenant: string, secret: string): string {
    this.#verifiers.set(tenant, new Webhook(secret));
    const { port } = this.#server.address() as AddressInfo;
    return `http://127.0.0.1:${port}/hooks/${tenant}`;
  }

  /** Receipts whose message id starts with `prefix` that arrived at least once. */
  countArrived(prefix: string): number {
    let count = 0;
    for (const key of this.arrivals.keys()) if (key.startsWith(prefix)) count += 1;
    return count;
  }

  /** Waits until `done()` holds, or `timeoutMs` passed without a new arrival. */
  async until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    let seen = -1;
    let quietSince = nowMs();
    while (!done()) {
      if (this.posts !== seen) {
        seen = this.posts;
        quietSince = nowMs();
      } else if (nowMs() - quietSince > timeoutMs) return false;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return true;
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #handle(request: IncomingMessage, response: ServerResponse): void {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const at = nowMs();
      this.posts += 1;
      const tenant = decodeURIComponent(request.url?.replace(/^\/hooks\//, "") ?? "");
      let payload: Payload;
      try {
        const verifier = this.#verifiers.get(tenant);
        if (verifier === undefined) throw new Error(`no endpoint for ${request.url}`);
        const body = Buffer.concat(chunks).toString("utf8");
        payload = verifier.verify(body, request.headers as Record<string, string>) as Payload;
      } catch (error) {
        // A refused POST is retried by the service: it arrives again, signed right or not at all.
        this.refused += 1;
        this.firstProblem ??= error instanceof Error ? error.message : String(error);
        response.writeHead(400).end();
        return;
      }
      for (const event of payload.events) {
        const messageId = event.data.receipt?.messageId;
        const readerId = event.data.readerId;
        if (event.type !== "receipt.read" || messageId === undefined || readerId === undefined)
          continue;
        const key = receiptKey(messageId, readerId);
        const times = this.arrivals.get(key);
        if (times === undefined) this.arrivals.set(key, [at]);
        else times.push(at);
      }
      response.writeHead(204).end();
    });
  }
}
