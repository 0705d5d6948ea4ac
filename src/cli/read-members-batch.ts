import {
  BatchGetReadMembersResponseSchema,
  type ReadMember,
} from "../../gen/receipts/v1/receipts_pb.js";
import { usageError } from "./cli-error.js";
import { type CommandContext, required, wholeNumber } from "./commands.js";
import { describeReceipt, formatTime, jsonLine } from "./output.js";

/**
 * `who-read`: BatchGetReadMembers. Each message's receipt line, then its first page of
 * readers (with their read times) and of members who have not read, and the token that
 * continues each with `receipts readers --page-token`.
 */
export async function whoRead(context: CommandContext): Promise<void> {
  if (context.positionals.length === 0) throw usageError("give at least one message id");
  const pageSize = context.options["page-size"];
  const conversationId = required(context, "conversation");
  const response = await context.client.batchGetReadMembers(
    {
      conversationId,
      messageIds: [...context.positionals],
      pageSize: typeof pageSize === "string" ? wholeNumber("page-size", pageSize, 1, 1_000) : 0,
    },
    context.call,
  );
  if (context.output.json) {
    context.output.out(jsonLine(BatchGetReadMembersResponseSchema, response));
    return;
  }
  for (const message of response.messageReadMembers) {
    if (message.receipt !== undefined) context.output.out(describeReceipt(message.receipt));
    const id = message.receipt?.messageId ?? "";
    side(context, "read", message.readMembers, message.readNextPageToken, conversationId, id);
    side(context, "unread", message.unreadMembers, message.unreadNextPageToken, conversationId, id);
  }
}

function side(
  context: CommandContext,
  filter: "read" | "unread",
  members: readonly ReadMember[],
  nextPageToken: string,
  conversationId: string,
  messageId: string,
): void {
  const listed = members.map((m) =>
    m.readAt === undefined ? m.userId : `${m.userId} (${formatTime(m.readAt)})`,
  );
  context.output.out(`  ${filter}: ${listed.length === 0 ? "-" : listed.join(", ")}`);
  if (nextPageToken !== "") {
    context.output.out(
      `  more ${filter}: receipts readers --conversation ${conversationId} --message ${messageId} --filter ${filter} --page-token ${nextPageToken}`,
    );
  }
}
