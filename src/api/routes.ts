import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { MessageLifecycleService } from "../../gen/receipts/v1/lifecycle_pb.js";
import { MembershipService as MembershipServiceDesc } from "../../gen/receipts/v1/membership_pb.js";
import { PrivacyService as PrivacyServiceDesc } from "../../gen/receipts/v1/privacy_pb.js";
import { ReadReceiptService } from "../../gen/receipts/v1/receipts_pb.js";
import { UserDataService } from "../../gen/receipts/v1/user_data_pb.js";
import type { MembershipService } from "../domain/membership-service.js";
import type { MessageDeletion } from "../domain/message-deletion.js";
import type { PrivacyService } from "../domain/privacy-service.js";
import type { ReceiptService } from "../domain/receipt-service.js";
import type { ReceiptWatcher } from "../domain/receipt-watcher.js";
import type { Logger } from "../logger.js";
import { toConnectError } from "./error-mapping.js";
import { lifecycleRoutes } from "./lifecycle-routes.js";
import { membershipRoutes } from "./membership-routes.js";
import { privacyRoutes } from "./privacy-routes.js";
import { receiptRoutes } from "./receipt-routes.js";
import { type UserDataDeps, userDataRoutes } from "./user-data-routes.js";

export interface ApiDeps {
  readonly receipts: ReceiptService;
  readonly membership: MembershipService;
  readonly privacy: PrivacyService;
  readonly deletion: MessageDeletion;
  readonly watcher: ReceiptWatcher;
  /** Export and erasure of one user's data. */
  readonly userData: UserDataDeps;
  readonly logger: Logger;
}

/** Registers every service of the API on a router. */
export function registerRoutes(router: ConnectRouter, deps: ApiDeps): void {
  router.service(ReadReceiptService, receiptRoutes(deps.receipts, deps.watcher));
  router.service(MembershipServiceDesc, membershipRoutes(deps.membership));
  router.service(UserDataService, userDataRoutes(deps.userData));
  router.service(PrivacyServiceDesc, privacyRoutes(deps.privacy));
  router.service(MessageLifecycleService, lifecycleRoutes(deps.deletion));
}

/** Turns every failure of a call, unary or mid-stream, into a wire error (see error-mapping.ts). */
export function errorMappingInterceptor(logger: Logger): Interceptor {
  return (next) => async (request) => {
    // Named only when there is an error to log.
    const procedure = () => `${request.service.typeName}/${request.method.name}`;
    try {
      const response = await next(request);
      if (!response.stream) return response;
      return {
        ...response,
        message: mapStreamErrors(response.message, logger, procedure(), request.signal),
      };
    } catch (error) {
      throw toConnectError(error, logger, procedure(), request.signal);
    }
  };
}

async function* mapStreamErrors<T>(
  messages: AsyncIterable<T>,
  logger: Logger,
  procedure: string,
  signal: AbortSignal,
): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    throw toConnectError(error, logger, procedure, signal);
  }
}
