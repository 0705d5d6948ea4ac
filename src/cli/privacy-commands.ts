import {
  GetReceiptSettingsResponseSchema,
  ReceiptPolicy,
  type ReceiptSettings,
  ReceiptVisibility,
  SetReceiptSettingsResponseSchema,
} from "../../gen/receipts/v1/privacy_pb.js";
import { usageError } from "./cli-error.js";
import { type CommandContext, optional } from "./commands.js";
import { jsonLine } from "./output.js";

const visibilities: Record<string, ReceiptVisibility> = {
  shared: ReceiptVisibility.SHARED,
  private: ReceiptVisibility.PRIVATE,
  inherit: ReceiptVisibility.INHERIT,
};

function visibility(option: string, value: string): ReceiptVisibility {
  const parsed = visibilities[value];
  if (parsed === undefined) {
    throw usageError(`--${option} ${value}: must be shared, private or inherit`);
  }
  return parsed;
}

const visibilityName = (value: ReceiptVisibility): string =>
  Object.keys(visibilities).find((name) => visibilities[name] === value) ?? "unspecified";

const policyName = (policy: ReceiptPolicy): string =>
  policy === ReceiptPolicy.ALWAYS
    ? "always"
    : policy === ReceiptPolicy.NEVER
      ? "never"
      : "user-choice";

/** `bob: private by default (set) ...` and one line per conversation override. */
function describeSettings(settings: ReceiptSettings | undefined): string[] {
  if (settings === undefined) return [];
  const own = settings.defaultVisibility === ReceiptVisibility.INHERIT ? "the tenant's" : "set";
  return [
    `${settings.userId}: ${visibilityName(settings.effectiveDefaultVisibility)} by default (${own}); tenant policy c2c ${policyName(settings.c2cPolicy)}, group ${policyName(settings.groupPolicy)}`,
    ...settings.conversations.map((c) => `  ${c.conversationId}  ${visibilityName(c.visibility)}`),
  ];
}

/** `privacy get [--user ID]` (GetReceiptSettings). */
export async function getPrivacy(context: CommandContext): Promise<void> {
  const response = await context.privacy.getReceiptSettings(
    { userId: optional(context, "user") ?? "" },
    context.call,
  );
  const lines = context.output.json
    ? [jsonLine(GetReceiptSettingsResponseSchema, response)]
    : describeSettings(response.settings);
  for (const line of lines) context.output.out(line);
}

/** `privacy set [--user ID] [--default V] [--conversation ID=V]...` (SetReceiptSettings). */
export async function setPrivacy(context: CommandContext): Promise<void> {
  const defaultText = optional(context, "default");
  const pairs = context.options.conversation;
  const conversations = (Array.isArray(pairs) ? pairs : []).map((pair) => {
    const at = pair.lastIndexOf("=");
    if (at <= 0) throw usageError(`--conversation ${pair}: must be ID=shared|private|inherit`);
    return {
      conversationId: pair.slice(0, at),
      visibility: visibility("conversation", pair.slice(at + 1)),
    };
  });
  if (defaultText === undefined && conversations.length === 0) {
    throw usageError("give --default, --conversation ID=VISIBILITY, or both");
  }
  const response = await context.privacy.setReceiptSettings(
    {
      userId: optional(context, "user") ?? "",
      defaultVisibility:
        defaultText === undefined
          ? ReceiptVisibility.UNSPECIFIED
          : visibility("default", defaultText),
      conversations,
    },
    context.call,
  );
  const lines = context.output.json
    ? [jsonLine(SetReceiptSettingsResponseSchema, response)]
    : describeSettings(response.settings);
  for (const line of lines) context.output.out(line);
}
