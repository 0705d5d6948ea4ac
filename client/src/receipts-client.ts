import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { MessageLifecycleService } from "../../gen/receipts/v1/lifecycle_pb.js";
import { MembershipService } from "../../gen/receipts/v1/membership_pb.js";
import { PrivacyService } from "../../gen/receipts/v1/privacy_pb.js";
import { ReadReceiptService } from "../../gen/receipts/v1/receipts_pb.js";
import { UserDataService } from "../../gen/receipts/v1/user_data_pb.js";
import { bearerInterceptor, type Credentials } from "./credentials.js";
import { typedErrors } from "./receipts-error.js";
import { type RetryOptions, retryInterceptor } from "./retry-interceptor.js";
import { ReceiptWatch, type WatchFilter, type WatchOptions } from "./watch.js";

export type Protocol = "connect" | "grpc" | "grpc-web";

export interface ReceiptsClientOptions extends Credentials {
  /** The service, e.g. `https://receipts.example.com` or `http://127.0.0.1:8080`. */
  readonly baseUrl: string;
  /** Default `connect`. Browsers speak `connect` or `grpc-web`; Node all three. */
  readonly protocol?: Protocol;
  /** Retries of calls safe to retry (on by default); `false` turns them off. */
  readonly retry?: RetryOptions | false;
  /** More interceptors, run inside the typed errors and outside the retries. */
  readonly interceptors?: readonly Interceptor[];
}

export interface ReceiptsClient {
  /** TrackMessages, SendReceipts, GetReceipts, ListReadMembers, WatchReceipts, MarkConversationRead. */
  readonly receipts: Client<typeof ReadReceiptService>;
  /** AddMembers, RemoveMembers, ListMembers. */
  readonly membership: Client<typeof MembershipService>;
  /** EraseUser (the tenant's backend only), ExportUserData. */
  readonly userData: Client<typeof UserDataService>;
  /** SetReceiptSettings, GetReceiptSettings: whether a user's reads are shown or private. */
  readonly privacy: Client<typeof PrivacyService>;
  /** DeleteMessages (the tenant's backend only). */
  readonly lifecycle: Client<typeof MessageLifecycleService>;
  /**
   * Follows WatchReceipts for as long as it is iterated: resumes after every
   * disconnect and drain, never delivers an update twice, and says when the
   * app must re-read (see WatchEvent).
   */
  watch(filter: WatchFilter, options?: WatchOptions): ReceiptWatch;
}

/** How a platform's entry point makes the transport for a protocol. */
export type TransportMaker<Options> = (
  protocol: Protocol,
  transport: { readonly baseUrl: string; readonly interceptors: Interceptor[] },
  options: Options,
) => Transport;

/** The `createReceiptsClient` of an entry point: options checked, then its transports. */
export function receiptsClientFactory<Options extends ReceiptsClientOptions>(
  makeTransport: TransportMaker<Options>,
): (options: Options) => ReceiptsClient {
  return (options) => {
    const baseUrl = checkedBaseUrl(options.baseUrl);
    return buildReceiptsClient(options, (protocol, interceptors) =>
      makeTransport(protocol, { baseUrl, interceptors }, options),
    );
  };
}

/** Builds the client over the transport the platform's entry point makes. */
export function buildReceiptsClient(
  options: ReceiptsClientOptions,
  makeTransport: (protocol: Protocol, interceptors: Interceptor[]) => Transport,
): ReceiptsClient {
  const bearer = bearerInterceptor(options);
  const interceptors: Interceptor[] = [
    typedErrors,
    ...(options.interceptors ?? []),
    ...(options.retry === false ? [] : [retryInterceptor(options.retry)]),
    // Innermost, so that every retry asks the token provider again.
    ...(bearer === undefined ? [] : [bearer]),
  ];
  const transport = makeTransport(options.protocol ?? "connect", interceptors);
  const receipts = createClient(ReadReceiptService, transport);
  return {
    receipts,
    membership: createClient(MembershipService, transport),
    userData: createClient(UserDataService, transport),
    privacy: createClient(PrivacyService, transport),
    lifecycle: createClient(MessageLifecycleService, transport),
    watch: (filter, watchOptions) => new ReceiptWatch(receipts, filter, watchOptions),
  };
}

/** The base URL without trailing slashes; a TypeError for anything but http(s). */
function checkedBaseUrl(baseUrl: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new TypeError(
      `createReceiptsClient: baseUrl ${baseUrl} is not a URL like http://127.0.0.1:8080`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(
      `createReceiptsClient: baseUrl ${baseUrl} must start with http:// or https://`,
    );
  }
  return baseUrl.replace(/\/+$/, "");
}
