import type { Timestamp } from "@bufbuild/protobuf/wkt";
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

interface MembershipChange {
  /** `--joined-at` or `--left-at`: when it happened (the server's now when absent). */
  readonly timeOption: string;
  /** For `added 2 users to team (1 user already members or listed twice)`. */
  readonly verb: string;
  readonly preposition: string;
  readonly unchangedWhy: string;
  /** The call; resolves with how many users changed and the response as JSON. */
  send(
    context: CommandContext,
    groupId: string,
    userIds: string[],
    at: Timestamp | undefined,
  ): Promise<{ changed: number; json: string }>;
}

async function changeMembers(context: CommandContext, change: MembershipChange): Promise<void> {
  const groupId = required(context, "group");
  const ids = userIds(context);
  const atText = optional(context, change.timeOption);
  const at = atText === undefined ? undefined : time(change.timeOption, atText);
  const { changed, json } = await change.send(context, groupId, ids, at);
  if (context.output.json) {
    context.output.out(json);
    return;
  }
  const unchanged = ids.length - changed;
  const note = unchanged > 0 ? ` (${users(unchanged)} ${change.unchangedWhy} or listed twice)` : "";
  context.output.out(`${change.verb} ${users(changed)} ${change.preposition} ${groupId}${note}`);
}

/** `members add --group ID USER_ID... [--joined-at TIME]` (AddMembers). */
export const addMembers = (context: CommandContext) =>
  changeMembers(context, {
    timeOption: "joined-at",
    verb: "added",
    preposition: "to",
    unchangedWhy: "already members",
    send: async (context, groupId, userIds, joinedAt) => {
      const response = await context.membership.addMembers(
        { groupId, userIds, joinedAt },
        context.call,
      );
      return { changed: response.addedCount, json: jsonLine(AddMembersResponseSchema, response) };
    },
  });

/** `members remove --group ID USER_ID... [--left-at TIME]` (RemoveMembers). */
export const removeMembers = (context: CommandContext) =>
  changeMembers(context, {
    timeOption: "left-at",
    verb: "removed",
    preposition: "from",
    unchangedWhy: "not members",
    send: async (context, groupId, userIds, leftAt) => {
      const response = await context.membership.removeMembers(
        { groupId, userIds, leftAt },
        context.call,
      );
      return {
        changed: response.removedCount,
        json: jsonLine(RemoveMembersResponseSchema, response),
      };
    },
  });

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
