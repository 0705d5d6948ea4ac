import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  GetReceiptSettingsResponseSchema,
  type PrivacyService as PrivacyServiceDesc,
  type ReceiptSettings,
  ReceiptSettingsSchema,
  SetReceiptSettingsResponseSchema,
} from "../../gen/receipts/v1/privacy_pb.js";
import type { PrivacyService, ReceiptSettingsView } from "../domain/privacy-service.js";
import { policyToProto, visibilityToDomain, visibilityToProto } from "./privacy-convert.js";
import { callerOf, tenantOf } from "./tenant-context.js";

/** PrivacyService: proto in, domain call, proto out. */
export function privacyRoutes(privacy: PrivacyService): ServiceImpl<typeof PrivacyServiceDesc> {
  return {
    async setReceiptSettings(request, context) {
      const view = await privacy.setReceiptSettings(tenantOf(context), callerOf(context), {
        userId: request.userId,
        defaultVisibility: visibilityToDomain(request.defaultVisibility),
        conversations: request.conversations.map((c) => ({
          conversationId: c.conversationId,
          visibility: visibilityToDomain(c.visibility),
        })),
      });
      return create(SetReceiptSettingsResponseSchema, { settings: settingsToProto(view) });
    },

    async getReceiptSettings(request, context) {
      const view = await privacy.getReceiptSettings(tenantOf(context), callerOf(context), {
        userId: request.userId,
      });
      return create(GetReceiptSettingsResponseSchema, { settings: settingsToProto(view) });
    },
  };
}

function settingsToProto(view: ReceiptSettingsView): ReceiptSettings {
  return create(ReceiptSettingsSchema, {
    userId: view.userId,
    defaultVisibility: visibilityToProto(view.defaultVisibility),
    effectiveDefaultVisibility: visibilityToProto(view.effectiveDefaultVisibility),
    conversations: view.conversations.map((c) => ({
      conversationId: c.conversationId,
      visibility: visibilityToProto(c.visibility),
    })),
    c2cPolicy: policyToProto(view.policy.c2c),
    groupPolicy: policyToProto(view.policy.group),
  });
}
