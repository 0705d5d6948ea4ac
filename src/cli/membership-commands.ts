import {
  AddMembersResponseSchema,
  ListMembersResponseSchema,
  RemoveMembersResponseSchema,
} from "../../gen/receipts/v1/membership_pb.js";
import { usageError } from "./cli-error.js";
import { type CommandContext, optional, printPages, required, time } from "./commands.js";
import { formatTime, jsonLine } from "./output.js";

/** The users of `members add|remove`: the positionals, 1 to 1,000 of them. */
function userIds(context: CommandContext): string[] {
  if (context.positionals.length === 0) throw usageError("give at least one user id");
  return [...context.positionals];
}

const users = (count: number) => `${count} user${count === 1 ? "" : "s"}`;

/** `members add --group ID USER_ID... [--joined-at TIME]` (AddMembers). */
export async function addMembers(context: CommandContext): Promise<void> {
  const groupId = required(context, "group");
  const ids = userIds(context);
  const joinedAt = optional(context, "joined-at");
  const response = await context.membership.addMembers(
    {
      groupId,
      userIds: ids,
      joinedAt: joinedAt === undefined ? undefined : time("joined-at", joinedAt),
    },
    context.call,
  );
  const already = ids.length - response.addedCount;
  context.output.out(
    context.output.json
      ? jsonLine(AddMembersResponseSchema, response)
      : `added ${users(response.addedCount)} to ${groupId}${already > 0 ? ` (${users(already)} already members or listed twice)` : ""}`,
  );
}

/** `members remove --group ID USER_ID... [--left-at TIME]` (RemoveMembers). */
export async function removeMembers(context: CommandContext): Promise<void> {
  const groupId = required(context, "group");
  const ids = userIds(context);
  const leftAt = optional(context, "left-at");
  const response = await context.membership.removeMembers(
    {
      groupId,
      userIds: ids,
      leftAt: leftAt === undefined ? undefined : time("left-at", leftAt),
    },
    context.call,
  );
  const notMembers = ids.length - response.removedCount;
  context.output.out(
    context.output.json
      ? jsonLine(RemoveMembersResponseSchema, response)
      : `removed ${users(response.removedCount)} from ${groupId}${notMembers > 0 ? ` (${users(notMembers)} not members or listed twice)` : ""}`,
  );
}

/** `members list --group ID` (ListMembers): the current members with the time each joined. */
export async function listMembers(context: CommandContext): Promise<void> {
  const groupId = required(context, "group");
  await printPages(
    context,
    (pageSize, pageToken) =>
      context.membership.listMembers({ groupId, pageSize, pageToken }, context.call),
    (page) =>
      context.output.json
        ? [jsonLine(ListMembersResponseSchema, page)]
        : page.members.map((member) => `${member.userId}  joined ${formatTime(member.joinedAt)}`),
  );
}
