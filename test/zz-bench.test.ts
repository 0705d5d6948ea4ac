import { createClient, createRouterTransport } from "@connectrpc/connect";
import { it } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { silentLogger } from "../src/logger.js";
import { drainInterceptor } from "../src/ops/drain-interceptor.js";
import { endOnAbortInterceptor } from "../src/ops/end-on-abort-interceptor.js";
import { healthService } from "../src/ops/health-service.js";
import { Metrics } from "../src/ops/metrics.js";
import { metricsInterceptor } from "../src/ops/metrics-interceptor.js";
import { Readiness } from "../src/ops/readiness.js";
import { requestLogInterceptor } from "../src/ops/request-log-interceptor.js";

it("bench", async () => {
  const readiness = new Readiness({ probes: [] });
  const metrics = new Metrics();
  const mk = (interceptors: ReturnType<typeof drainInterceptor>[]) => createClient(Health, createRouterTransport((r) => r.service(Health, healthService(readiness, () => [])), { router: { interceptors } }));
  const bare = mk([]);
  const ops = mk([requestLogInterceptor(silentLogger), metricsInterceptor(metrics), drainInterceptor(readiness), endOnAbortInterceptor()]);
  const time = async (c: typeof bare, n: number) => { const s = performance.now(); for (let i = 0; i < n; i++) await c.check({}); return ((performance.now() - s) / n) * 1000; };
  await time(bare, 3000); await time(ops, 3000);
  const r: Record<string, number[]> = { bare: [], ops: [] };
  for (let k = 0; k < 5; k++) { r.bare!.push(await time(bare, 5000)); r.ops!.push(await time(ops, 5000)); }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[2]!.toFixed(1);
  console.log(`median µs/call: bare ${med(r.bare!)}, ops ${med(r.ops!)}`);
}, 120_000);
