import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AddMembersResponseSchema,
  ListMembersResponseSchema,
  type MembershipService as MembershipServiceDesc,
  RemoveMembersResponseSchema,
} from "../../gen/receipts/v1/membership_pb.js";
import type { MembershipService } from "../domain/membership-service.js";
import { msFromTimestamp, timestampFromMsValue } from "./convert.js";
import { callerOf, tenantOf } from "./tenant-context.js";

/** MembershipService: proto in, domain call, proto out. */
export function membershipRoutes(
  membership: MembershipService,
): ServiceImpl<typeof MembershipServiceDesc> {
  return {
    async addMembers(request, context) {
      const result = await membership.addMembers(tenantOf(context), callerOf(context), {
        groupId: request.groupId,
        userIds: request.userIds,
        joinedAt: msFromTimestamp(request.joinedAt),
      });
      return create(AddMembersResponseSchema, result);
    },

    async removeMembers(request, context) {
      const result = await membership.removeMembers(tenantOf(context), callerOf(context), {
        groupId: request.groupId,
        userIds: request.userIds,
        leftAt: msFromTimestamp(request.leftAt),
      });
      return create(RemoveMembersResponseSchema, result);
    },

    async listMembers(request, context) {
      const page = await membership.listMembers(tenantOf(context), callerOf(context), request);
      return create(ListMembersResponseSchema, {
        members: page.items.map((m) => ({
          userId: m.userId,
          joinedAt: timestampFromMsValue(m.joinedAt),
        })),
        nextPageToken: page.nextPageToken,
        isFinished: page.nextPageToken === "",
      });
    },
  };
}
