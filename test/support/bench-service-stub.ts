import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { BenchService, EmptyResponseSchema } from "../../bench/gen/bench/v1/bench_pb.js";

/** The benchmark's empty RPC on a test server; `onEmpty` runs as each call is handled. */
export function benchServiceStub(onEmpty: () => void = () => {}) {
  return (router: ConnectRouter) =>
    router.service(BenchService, {
      empty: () => {
        onEmpty();
        return create(EmptyResponseSchema);
      },
      subscribe: async function* () {},
      broadcast: () => ({}),
      stats: () => ({}),
    });
}
