import { DeleteMessagesResponseSchema } from "../../gen/receipts/v1/lifecycle_pb.js";
import { usageError } from "./cli-error.js";
import { type CommandContext, required } from "./commands.js";
import { jsonLine } from "./output.js";

const messages = (count: number) => `${count} message${count === 1 ? "" : "s"}`;

/** `messages delete --conversation ID MESSAGE_ID...` (DeleteMessages, the tenant's API key). */
export async function deleteMessages(context: CommandContext): Promise<void> {
  const conversationId = required(context, "conversation");
  const messageIds = [...context.positionals];
  if (messageIds.length === 0) throw usageError("give at least one message id");
  const response = await context.lifecycle.deleteMessages(
    { conversationId, messageIds },
    context.call,
  );
  if (context.output.json) {
    context.output.out(jsonLine(DeleteMessagesResponseSchema, response));
    return;
  }
  const skipped = new Set(messageIds).size - response.deletedCount;
  const note = skipped > 0 ? ` (${messages(skipped)} not tracked or already deleted)` : "";
  context.output.out(`deleted ${messages(response.deletedCount)} of ${conversationId}${note}`);
}
