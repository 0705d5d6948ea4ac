import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  DeleteMessagesResponseSchema,
  type MessageLifecycleService,
} from "../../gen/receipts/v1/lifecycle_pb.js";
import type { MessageDeletion } from "../domain/message-deletion.js";
import { callerOf, tenantOf } from "./tenant-context.js";

/** MessageLifecycleService: proto in, domain call, proto out. */
export function lifecycleRoutes(
  deletion: MessageDeletion,
): ServiceImpl<typeof MessageLifecycleService> {
  return {
    async deleteMessages(request, context) {
      const result = await deletion.deleteMessages(tenantOf(context), callerOf(context), request);
      return create(DeleteMessagesResponseSchema, result);
    },
  };
}
