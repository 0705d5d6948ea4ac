import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { healthService } from "./health-service.js";
import type { Readiness } from "./readiness.js";
import { reflectionServices } from "./reflection-service.js";

/**
 * Adds grpc.health.v1.Health and server reflection (v1, v1alpha) to a router.
 * Both describe every service of the router, read when first asked, so
 * services registered before or after these are all included.
 */
export function registerOpsRoutes(router: ConnectRouter, readiness: Readiness): void {
  const services = (): DescService[] => [...new Set(router.handlers.map((h) => h.service))];
  router.service(
    Health,
    healthService(readiness, () => services().map((s) => s.typeName)),
  );
  const reflection = reflectionServices(services);
  router.service(ServerReflection, reflection.v1);
  router.service(ServerReflectionV1Alpha, reflection.v1alpha);
}

const opsServices: ReadonlySet<DescService> = new Set([
  Health,
  ServerReflection,
  ServerReflectionV1Alpha,
]);

/**
 * Lets health checks and reflection past an interceptor meant for the API
 * (authentication, rate limits): load balancers and probes carry no credentials.
 */
export function exceptOpsServices(interceptor: Interceptor): Interceptor {
  return (next) => {
    const intercepted = interceptor(next);
    return (request) => (opsServices.has(request.service) ? next(request) : intercepted(request));
  };
}
