import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  DeleteMessagesResponseSchema,
  type MessageLifecycleService,
} from "../../gen/receipts/v1/lifecycle_pb.js";
import type { AccessPolicy } from "../domain/access-policy.js";
import type { MessageDeletion } from "../domain/message-deletion.js";
import { callerKey, tenantKey } from "./tenant-context.js";

/** MessageLifecycleService: proto in, domain call, proto out. */
export function lifecycleRoutes(
  deletion: MessageDeletion,
  policy: AccessPolicy,
): ServiceImpl<typeof MessageLifecycleService> {
  return {
    async deleteMessages(request, context) {
      policy.authorizeDeleteMessages(context.values.get(callerKey));
      const result = await deletion.deleteMessages(context.values.get(tenantKey), request);
      return create(DeleteMessagesResponseSchema, result);
    },
  };
}
