import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  type Health,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/grpc/health/v1/health_pb.js";
import type { Readiness } from "./readiness.js";

const status = (value: ServingStatus): HealthCheckResponse =>
  create(HealthCheckResponseSchema, { status: value });

const servingStatus = (ready: boolean): ServingStatus =>
  ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;

/**
 * grpc.health.v1.Health: every service of the server shares one status, the
 * instance's readiness ("" asks for the server as a whole).
 */
export function healthService(
  readiness: Readiness,
  services: () => readonly string[],
): ServiceImpl<typeof Health> {
  const known = (service: string) => service === "" || services().includes(service);
  return {
    async check(request) {
      if (!known(request.service)) {
        throw new ConnectError(`unknown service ${request.service}`, Code.NotFound);
      }
      return status(servingStatus((await readiness.check()).ready));
    },

    async list() {
      const serving = servingStatus((await readiness.check()).ready);
      const statuses: Record<string, HealthCheckResponse> = { "": status(serving) };
      for (const service of services()) statuses[service] = status(serving);
      return create(HealthListResponseSchema, { statuses });
    },

    async *watch(request, context) {
      if (!known(request.service)) {
        // Per the protocol: say so, keep the call open (the service may appear later).
        yield status(ServingStatus.SERVICE_UNKNOWN);
        for await (const _ of readiness.watch(context.signal));
        return;
      }
      for await (const ready of readiness.watch(context.signal)) yield status(servingStatus(ready));
    },
  };
}
