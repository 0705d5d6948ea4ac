import type { DescMethod } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import {
  ReadReceiptService,
  type WatchReceiptsResponse,
} from "../../gen/receipts/v1/receipts_pb.js";
import type { Metrics } from "./metrics.js";
import type { ObserveCall } from "./observe-calls.js";

/** The grpc_type values of go-grpc-prometheus, so that stock dashboards work. */
const grpcTypes: Record<DescMethod["methodKind"], string> = {
  unary: "unary",
  server_streaming: "server_stream",
  client_streaming: "client_stream",
  bidi_streaming: "bidi_stream",
};

const watchReceipts = ReadReceiptService.method.watchReceipts;

/** The series one method reports into: labels built once per method, not once per call. */
interface MethodSeries {
  readonly started: { inc(): void };
  readonly seconds: { observe(seconds: number): void };
  readonly open: { inc(): void; dec(): void };
  handled(code: string): { inc(): void };
}

/**
 * Counts and times every call, tracks open streams and the WatchReceipts fan-out. An observer
 * for `observeCalls`.
 */
export function callMetrics(metrics: Metrics): ObserveCall {
  const byMethod = new Map<DescMethod, MethodSeries>();
  const seriesOf = (method: DescMethod): MethodSeries => {
    let series = byMethod.get(method);
    if (series === undefined) {
      const stream = { grpc_service: method.parent.typeName, grpc_method: method.name };
      const labels = { ...stream, grpc_type: grpcTypes[method.methodKind] };
      const handled = new Map<string, { inc(): void }>();
      series = {
        started: metrics.rpcStarted.labels(labels),
        seconds: metrics.rpcSeconds.labels(labels),
        open: metrics.openStreams.labels(stream),
        handled(code) {
          let counter = handled.get(code);
          if (counter === undefined) {
            counter = metrics.rpcHandled.labels({ ...labels, grpc_code: code });
            handled.set(code, counter);
          }
          return counter;
        },
      };
      byMethod.set(method, series);
    }
    return series;
  };
  const watchSent = new Map<string, { inc(): void }>();
  const watchSentOf = (update: string) => {
    let counter = watchSent.get(update);
    if (counter === undefined) {
      counter = metrics.watchMessagesSent.labels({ update });
      watchSent.set(update, counter);
    }
    return counter;
  };
  return (request) => {
    const series = seriesOf(request.method);
    series.started.inc();
    const startedAt = performance.now();
    const isWatch = request.method === watchReceipts;
    let open = false;
    return {
      streamOpened() {
        open = true;
        series.open.inc();
      },
      message(message) {
        if (isWatch) watchSentOf((message as WatchReceiptsResponse).update.case ?? "none").inc();
      },
      end(error) {
        series.seconds.observe((performance.now() - startedAt) / 1000);
        series.handled(error === undefined ? "OK" : Code[error.code]).inc();
        if (open) series.open.dec();
      },
    };
  };
}
