import { ReceiptPolicy, ReceiptVisibility } from "../../gen/receipts/v1/privacy_pb.js";
import type { RequestedVisibility } from "../domain/privacy-service.js";
import type {
  ReceiptPolicy as DomainReceiptPolicy,
  ReceiptVisibility as DomainReceiptVisibility,
} from "../domain/receipt-privacy.js";

/** Proto ↔ domain conversions of PrivacyService; nothing here decides anything. */

/** UNSPECIFIED (and unknown values) become undefined, which the domain reads as "not given". */
export function visibilityToDomain(visibility: ReceiptVisibility): RequestedVisibility {
  switch (visibility) {
    case ReceiptVisibility.SHARED:
      return "shared";
    case ReceiptVisibility.PRIVATE:
      return "private";
    case ReceiptVisibility.INHERIT:
      return "inherit";
    default:
      return undefined;
  }
}

/** Undefined (no setting of the user's own) is INHERIT. */
export function visibilityToProto(
  visibility: DomainReceiptVisibility | undefined,
): ReceiptVisibility {
  if (visibility === undefined) return ReceiptVisibility.INHERIT;
  return visibility === "private" ? ReceiptVisibility.PRIVATE : ReceiptVisibility.SHARED;
}

export function policyToProto(policy: DomainReceiptPolicy): ReceiptPolicy {
  switch (policy) {
    case "always":
      return ReceiptPolicy.ALWAYS;
    case "never":
      return ReceiptPolicy.NEVER;
    default:
      return ReceiptPolicy.USER_CHOICE;
  }
}
