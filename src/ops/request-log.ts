import { randomUUID } from "node:crypto";
import { Code, createContextKey } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { noTenant, tenantKey } from "../api/tenant-context.js";
import type { Logger } from "../logger.js";
import type { ObserveCall } from "./observe-calls.js";

export const requestIdHeader = "x-request-id";

/** The id of the call, from the caller's `x-request-id` or made up here; for correlating logs. */
export const requestIdKey = createContextKey<string>("", { description: "request id" });

// A caller's id is echoed into logs and headers: accept only short, printable, unambiguous ones.
const acceptableId = /^[A-Za-z0-9._:/=+-]{1,128}$/;

/** Codes that mean the server (not the caller) has a problem. */
const serverFaults = new Set([Code.Unknown, Code.Internal, Code.DataLoss, Code.Unimplemented]);

const protocolOf = (contentType: string | null): string => {
  if (contentType?.startsWith("application/grpc-web")) return "grpc-web";
  if (contentType?.startsWith("application/grpc")) return "grpc";
  return "connect";
};

/**
 * One log line per call, when it ends: the rpc, protocol, code, duration,
 * tenant (none for a call refused unauthenticated) and request id (streams
 * also count the messages they sent). The request id comes back in the
 * `x-request-id` response header (or in the error's metadata). Request and
 * response messages are never logged: they hold user ids beyond the tenant's.
 * Health checks, which probes send every few seconds, log at debug level;
 * server faults log at warn. An observer for `observeCalls`.
 */
export function requestLog(logger: Logger): ObserveCall {
  return (request) => {
    const given = request.header.get(requestIdHeader);
    const requestId = given !== null && acceptableId.test(given) ? given : randomUUID();
    request.contextValues.set(requestIdKey, requestId);
    const started = performance.now();
    let messages = 0;
    return {
      answering(header) {
        header.set(requestIdHeader, requestId);
      },
      message() {
        messages += 1;
      },
      end(error) {
        if (error !== undefined) error.metadata.set(requestIdHeader, requestId);
        const level =
          error !== undefined && serverFaults.has(error.code)
            ? "warn"
            : request.service === Health
              ? "debug"
              : "info";
        // At the usual production level (info off) a call that went well costs no line.
        if (!logger.isLevelEnabled(level)) return;
        const tenant = request.contextValues.get(tenantKey);
        logger[level](
          {
            requestId,
            rpc: `${request.service.typeName}/${request.method.name}`,
            protocol: protocolOf(request.header.get("content-type")),
            code: error === undefined ? "ok" : codeToString(error.code),
            durationMs: Math.round((performance.now() - started) * 10) / 10,
            ...(tenant === noTenant ? {} : { tenant }),
            ...(request.stream ? { messages } : {}),
            ...(error === undefined ? {} : { error: error.rawMessage }),
          },
          "rpc",
        );
      },
    };
  };
}
