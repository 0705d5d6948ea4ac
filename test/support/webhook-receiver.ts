import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

/** A fresh Standard Webhooks secret, as `whsec_<base64>`. */
export const newWebhookSecret = (): string => `whsec_${randomBytes(32).toString("base64")}`;

/** One POST the receiver got, as the receiver saw it. */
export interface ReceivedWebhook {
  readonly at: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly payload: {
    readonly tenant: string;
    readonly eventCount: number;
    readonly events: readonly {
      readonly id: string;
      readonly type: string;
      readonly timestamp: string;
      readonly data: Record<string, unknown> & {
        receipt?: Record<string, unknown>;
        readerId?: string;
        conversationId?: string;
      };
    }[];
  };
}

/** How the receiver answers a request; the default is 204. */
export type Answer = (request: ReceivedWebhook, response: ServerResponse) => void | Promise<void>;

/**
 * A real HTTP webhook receiver in the test process: it keeps every request
 * and answers as `answer` says. `listen()` again on the same port after
 * `close()` brings a receiver that was down back up.
 */
export class WebhookReceiver {
  readonly received: ReceivedWebhook[] = [];
  answer: Answer = (_request, response) => {
    response.writeHead(204).end();
  };
  #server: Server | undefined;
  #port = 0;
  readonly #waiters = new Set<() => void>();

  get port(): number {
    return this.#port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}/hooks`;
  }

  async listen(port = this.#port): Promise<this> {
    const server = createServer((request, response) => void this.#handle(request, response));
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
    return this;
  }

  /** Stops listening and drops open connections: the receiver is down. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }

  /** Every event received, in arrival order (duplicates included). */
  events(): ReceivedWebhook["payload"]["events"][number][] {
    return this.received.flatMap((r) => r.payload.events);
  }

  /** Resolves once `done()` holds, checked after every request; rejects after `timeoutMs`. */
  async until(done: () => boolean, timeoutMs = 15_000): Promise<void> {
    if (done()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`webhook receiver: condition not met in ${timeoutMs} ms`));
      }, timeoutMs);
      const check = () => {
        if (!done()) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
    });
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers)) {
      if (typeof value === "string") headers[name] = value;
    }
    const received: ReceivedWebhook = {
      at: Date.now(),
      headers,
      body,
      payload: JSON.parse(body) as ReceivedWebhook["payload"],
    };
    this.received.push(received);
    await this.answer(received, response);
    for (const check of [...this.#waiters]) check();
  }
}

/** Verifies a received webhook with the standardwebhooks package; throws when it does not verify. */
export function verifyWith(secret: string, webhook: ReceivedWebhook): unknown {
  return new Webhook(secret).verify(webhook.body, webhook.headers);
}
