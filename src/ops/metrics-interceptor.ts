import type { DescMethod } from "@bufbuild/protobuf";
import { Code, type Interceptor } from "@connectrpc/connect";
import {
  ReadReceiptService,
  type WatchReceiptsResponse,
} from "../../gen/receipts/v1/receipts_pb.js";
import type { Metrics } from "./metrics.js";
import { observeCalls } from "./observe-calls.js";

/** The grpc_type values of go-grpc-prometheus, so that stock dashboards work. */
const grpcTypes: Record<DescMethod["methodKind"], string> = {
  unary: "unary",
  server_streaming: "server_stream",
  client_streaming: "client_stream",
  bidi_streaming: "bidi_stream",
};

const watchReceipts = ReadReceiptService.method.watchReceipts;

/** Counts and times every call, tracks open streams and the WatchReceipts fan-out. */
export function metricsInterceptor(metrics: Metrics): Interceptor {
  return observeCalls((request) => {
    const stream = { grpc_service: request.service.typeName, grpc_method: request.method.name };
    const labels = { ...stream, grpc_type: grpcTypes[request.method.methodKind] };
    metrics.rpcStarted.inc(labels);
    const stopTimer = metrics.rpcSeconds.startTimer(labels);
    const isWatch = request.method === watchReceipts;
    let open = false;
    return {
      streamOpened() {
        open = true;
        metrics.openStreams.inc(stream);
      },
      message(message) {
        if (isWatch) {
          const update = (message as WatchReceiptsResponse).update.case ?? "none";
          metrics.watchMessagesSent.inc({ update });
        }
      },
      end(error) {
        stopTimer();
        metrics.rpcHandled.inc({
          ...labels,
          grpc_code: error === undefined ? "OK" : Code[error.code],
        });
        if (open) metrics.openStreams.dec(stream);
      },
    };
  });
}
