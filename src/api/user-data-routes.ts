import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { TrackedMessageSchema } from "../../gen/receipts/v1/receipts_pb.js";
import {
  EraseUserResponseSchema,
  ExportedHorizonSchema,
  ExportedHorizonSetSchema,
  ExportedMembershipSchema,
  ExportedReceiptSchema,
  ExportedReceiptSettingSchema,
  type ExportUserDataResponse,
  ExportUserDataResponseSchema,
  type UserDataService as UserDataServiceDesc,
} from "../../gen/receipts/v1/user_data_pb.js";
import { exportUserData } from "../domain/user-data-export.js";
import type { UserErasure } from "../domain/user-erasure.js";
import type { UserDataRecord } from "../store/user-data-store.js";
import { conversationTypeToProto, timestampFromMsValue } from "./convert.js";
import { visibilityToProto } from "./privacy-convert.js";
import { callerOf, tenantOf } from "./tenant-context.js";

export interface UserDataDeps {
  readonly erasure: UserErasure;
  readonly store: Parameters<typeof exportUserData>[0];
}

/** UserDataService: proto in, domain call, proto out. */
export function userDataRoutes(userData: UserDataDeps): ServiceImpl<typeof UserDataServiceDesc> {
  return {
    async eraseUser(request, context) {
      const progress = await userData.erasure.eraseUser(
        tenantOf(context),
        callerOf(context),
        request,
        context.signal,
      );
      return create(EraseUserResponseSchema, {
        done: progress.done,
        step: progress.step,
        removed: progress.removed,
        startedAt: timestampFromMsValue(progress.startedAt),
        ...(progress.finishedAt === undefined
          ? {}
          : { finishedAt: timestampFromMsValue(progress.finishedAt) }),
      });
    },

    async *exportUserData(request, context) {
      const records = exportUserData(userData.store, tenantOf(context), callerOf(context), {
        userId: request.userId,
      });
      for await (const record of records) {
        if (context.signal.aborted) return;
        yield create(ExportUserDataResponseSchema, { record: recordToProto(record) });
      }
    },
  };
}

function recordToProto(record: UserDataRecord): ExportUserDataResponse["record"] {
  const at = timestampFromMsValue;
  switch (record.kind) {
    case "receipt":
      return {
        case: "receipt",
        value: create(ExportedReceiptSchema, {
          conversationId: record.conversationId,
          messageId: record.messageId,
          readAt: at(record.readAt),
        }),
      };
    case "horizon":
      return {
        case: "horizon",
        value: create(ExportedHorizonSchema, {
          conversationId: record.conversationId,
          readUpTo: at(record.readUpTo),
        }),
      };
    case "horizon_set":
      return {
        case: "horizonSet",
        value: create(ExportedHorizonSetSchema, {
          conversationId: record.conversationId,
          readUpTo: at(record.readUpTo),
          setAt: at(record.setAt),
        }),
      };
    case "membership":
      return {
        case: "membership",
        value: create(ExportedMembershipSchema, {
          groupId: record.groupId,
          joinedAt: at(record.joinedAt),
          ...(record.leftAt === undefined ? {} : { leftAt: at(record.leftAt) }),
        }),
      };
    case "message": {
      const { message } = record;
      return {
        case: "message",
        value: create(TrackedMessageSchema, {
          ...message,
          conversationType: conversationTypeToProto(message.conversationType),
          sentAt: at(message.sentAt),
        }),
      };
    }
    case "receipt_setting":
      return {
        case: "receiptSetting",
        value: create(ExportedReceiptSettingSchema, {
          conversationId: record.conversationId,
          visibility: visibilityToProto(record.visibility),
        }),
      };
    case "private_receipt":
      return {
        case: "privateReceipt",
        value: create(ExportedReceiptSchema, {
          conversationId: record.conversationId,
          messageId: record.messageId,
          readAt: at(record.readAt),
        }),
      };
  }
}
