import * as http from "node:http";
import * as https from "node:https";
import { isIP } from "node:net";
import { ForbiddenAddressError, guardedLookup, isForbiddenAddress } from "./url-policy.js";
import type { WebhookUrlRules } from "./webhook-endpoint.js";

/** How one POST ended. */
export type SendOutcome =
  | { readonly kind: "delivered"; readonly status: number }
  /** 410 Gone: the receiver asks never to be called again. */
  | { readonly kind: "gone"; readonly status: number }
  | {
      readonly kind: "retry";
      /** An HTTP status, "timeout", or a connection error's code; never a body or a secret. */
      readonly reason: string;
      /** From Retry-After, when the receiver sent one. */
      readonly retryAfterMs?: number;
    };

/** Bytes of a response body read at most: receivers' answers are never needed beyond this. */
const maxResponseBytes = 4_096;

/**
 * POSTs webhook bodies over keep-alive connections, one pool per endpoint (`pool`), so that
 * endpoints of several tenants at one receiver never wait for each other's connections (nor
 * spend their timeout queued behind them).
 * Redirects are never followed (a 3xx is an answer to retry), bodies are read
 * only up to a few kilobytes, and every connection goes through the URL
 * rules' address check.
 */
export class WebhookSender {
  readonly #rules: WebhookUrlRules;
  readonly #agents = new Map<string, http.Agent>();

  constructor(rules: WebhookUrlRules) {
    this.#rules = rules;
  }

  send(
    url: string,
    headers: Record<string, string>,
    body: string,
    options: {
      readonly timeoutMs: number;
      readonly concurrency: number;
      readonly signal?: AbortSignal;
      /** Names the endpoint whose connections to use; requests without one share by origin. */
      readonly pool?: string;
    },
  ): Promise<SendOutcome> {
    const target = new URL(url);
    const host = target.hostname.replace(/^\[|\]$/g, "");
    // A literal address never goes through lookup: it is checked here.
    if (!this.#rules.allowPrivate && isIP(host) !== 0 && isForbiddenAddress(host)) {
      return Promise.resolve({ kind: "retry", reason: "EWEBHOOKADDRESS" });
    }
    const secure = target.protocol === "https:";
    if (!secure && !this.#rules.allowPrivate) {
      return Promise.resolve({ kind: "retry", reason: "EWEBHOOKSCHEME" });
    }
    const agent = this.#agentFor(options.pool ?? "", target, secure, options.concurrency);
    const payload = Buffer.from(body, "utf8");
    return new Promise((resolve) => {
      let settled = false;
      const finish = (outcome: SendOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(outcome);
      };
      const request = (secure ? https : http).request(target, {
        method: "POST",
        agent,
        headers: {
          ...headers,
          "content-type": "application/json",
          "content-length": String(payload.length),
          "user-agent": "receipts-webhooks/1",
        },
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      });
      // One deadline for the whole exchange (connect, upload, answer), not per socket event.
      const timer = setTimeout(() => {
        finish({ kind: "retry", reason: "timeout" });
        request.destroy();
      }, options.timeoutMs);
      request.on("error", (error: NodeJS.ErrnoException) => {
        const reason =
          error instanceof ForbiddenAddressError ? error.code : (error.code ?? error.name);
        finish({ kind: "retry", reason });
      });
      request.on("response", (response) => {
        const status = response.statusCode ?? 0;
        let read = 0;
        response.on("data", (chunk: Buffer) => {
          read += chunk.length;
          if (read > maxResponseBytes) response.destroy();
        });
        const done = () => finish(outcomeOf(status, response.headers["retry-after"]));
        response.on("end", done);
        // A body cut off at the limit still answered with its status.
        response.on("close", done);
        response.on("error", done);
      });
      request.end(payload);
    });
  }

  close(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }

  #agentFor(pool: string, target: URL, secure: boolean, concurrency: number): http.Agent {
    const key = `${pool}|${target.origin}|${concurrency}`;
    let agent = this.#agents.get(key);
    if (agent === undefined) {
      const options = {
        keepAlive: true,
        maxSockets: concurrency,
        lookup: guardedLookup(this.#rules) as unknown as typeof import("node:dns").lookup,
      };
      agent = secure ? new https.Agent(options) : new http.Agent(options);
      this.#agents.set(key, agent);
    }
    return agent;
  }
}

function outcomeOf(status: number, retryAfter: string | undefined): SendOutcome {
  if (status >= 200 && status < 300) return { kind: "delivered", status };
  if (status === 410) return { kind: "gone", status };
  const retryAfterMs = parseRetryAfter(retryAfter);
  return retryAfterMs === undefined
    ? { kind: "retry", reason: String(status) }
    : { kind: "retry", reason: String(status), retryAfterMs };
}

/** Retry-After as seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}
