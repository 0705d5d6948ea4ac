// What both entry points (node.ts, browser.ts) export besides createReceiptsClient.

export { Code } from "@connectrpc/connect";
export * from "../../gen/google/rpc/error_details_pb.js";
export * from "../../gen/receipts/v1/lifecycle_pb.js";
export * from "../../gen/receipts/v1/membership_pb.js";
export * from "../../gen/receipts/v1/privacy_pb.js";
export * from "../../gen/receipts/v1/receipts_pb.js";
export * from "../../gen/receipts/v1/user_data_pb.js";
export { type BackoffOptions, backoffDelayMs } from "./backoff.js";
export type { Credentials } from "./credentials.js";
export type { Protocol, ReceiptsClient, ReceiptsClientOptions } from "./receipts-client.js";
export { type FieldViolation, ReceiptsError } from "./receipts-error.js";
export { RetryBudget } from "./retry-budget.js";
export { type RetryOptions, retryableProcedures, retryInterceptor } from "./retry-interceptor.js";
export type { ReceiptWatch, RereadReason, WatchEvent, WatchFilter, WatchOptions } from "./watch.js";
