import type { ConversationType } from "./model.js";
import type { TenantPrivacy } from "./receipt-privacy.js";

/** Per-tenant receipt settings, like the IM consoles' "group types that support read receipts". */
export interface TenantSettings {
  /** Receipts on or off per conversation type. */
  readonly receipts: { readonly [type in ConversationType]: boolean };
  /**
   * The largest group (members when the message was sent) for which ListReadMembers lists who
   * has and has not read; above it only the counts are served.
   */
  readonly maxGroupSizeForMemberLists: number;
  /** Whether any current member, not only the sender, may list who has read a message. */
  readonly readMembersOpenToMembers: boolean;
  /** Private reads: policy per conversation type, the default setting, reciprocity (C2C). */
  readonly privacy?: TenantPrivacy;
  /** How long messages and their receipts are kept after sent_at (ms); undefined: until deleted. */
  readonly retentionMs?: number;
}

export const defaultTenantSettings: TenantSettings = Object.freeze({
  receipts: Object.freeze({ c2c: true, group: true }),
  maxGroupSizeForMemberLists: 10_000,
  readMembersOpenToMembers: false,
});
