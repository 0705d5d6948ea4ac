import { type Timestamp, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { CallOptions, Client } from "@connectrpc/connect";
import type { ReceiptsClient } from "../../client/src/node.js";
import type { MembershipService } from "../../gen/receipts/v1/membership_pb.js";
import type { PrivacyService } from "../../gen/receipts/v1/privacy_pb.js";
import {
  ConversationType,
  GetReceiptsResponseSchema,
  ListReadMembersResponseSchema,
  MarkConversationReadResponseSchema,
  ReadFilter,
  type ReadReceiptService,
  SendReceiptsResponseSchema,
  TrackMessagesResponseSchema,
} from "../../gen/receipts/v1/receipts_pb.js";
import type { UserDataService } from "../../gen/receipts/v1/user_data_pb.js";
import { usageError } from "./cli-error.js";
import {
  describeReceipt,
  describeWatchEvent,
  formatTime,
  jsonLine,
  type Output,
  watchEventJson,
} from "./output.js";

/** What every command gets: the client, its options and positionals, and where to write. */
export interface CommandContext {
  readonly client: Client<typeof ReadReceiptService>;
  readonly membership: Client<typeof MembershipService>;
  readonly userData: Client<typeof UserDataService>;
  readonly privacy: Client<typeof PrivacyService>;
  readonly lifecycle: ReceiptsClient["lifecycle"];
  /** The client package's resuming WatchReceipts. */
  readonly watch: ReceiptsClient["watch"];
  readonly options: Readonly<Record<string, string | boolean | string[] | undefined>>;
  readonly positionals: readonly string[];
  readonly output: Output;
  /** Per-call options: the --timeout deadline. */
  readonly call: CallOptions;
}

export function required(context: CommandContext, name: string): string {
  const value = context.options[name];
  if (typeof value !== "string" || value === "") throw usageError(`--${name} is required`);
  return value;
}

export function optional(context: CommandContext, name: string): string | undefined {
  const value = context.options[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** An RFC 3339 time such as 2026-01-02T10:00:00Z (a bare date counts as midnight UTC). */
export function time(name: string, value: string): Timestamp {
  const ms = Date.parse(value);
  if (!Number.isFinite(ms))
    throw usageError(`--${name} ${value}: not a time like 2026-01-02T10:00:00Z`);
  return timestampFromMs(ms);
}

export function wholeNumber(name: string, value: string, min: number, max: number): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < min || number > max) {
    throw usageError(`--${name} ${value}: must be a whole number from ${min} to ${max}`);
  }
  return number;
}

function messageIds(context: CommandContext): string[] {
  if (context.positionals.length === 0) throw usageError("give at least one message id");
  return [...context.positionals];
}

export async function track(context: CommandContext): Promise<void> {
  const receiverId = optional(context, "receiver") ?? "";
  const type = optional(context, "type") ?? (receiverId === "" ? "group" : "c2c");
  if (type !== "group" && type !== "c2c") throw usageError(`--type ${type}: must be group or c2c`);
  const sentAt = optional(context, "sent-at");
  const response = await context.client.trackMessages(
    {
      messages: [
        {
          conversationId: required(context, "conversation"),
          conversationType: type === "c2c" ? ConversationType.C2C : ConversationType.GROUP,
          messageId: required(context, "message"),
          senderId: required(context, "sender"),
          receiverId,
          sentAt: sentAt === undefined ? timestampFromMs(Date.now()) : time("sent-at", sentAt),
        },
      ],
    },
    context.call,
  );
  context.output.out(
    context.output.json
      ? jsonLine(TrackMessagesResponseSchema, response)
      : response.trackedCount === 1
        ? "tracked 1 new message"
        : "already tracked with the same data: nothing changed",
  );
}

export async function send(context: CommandContext): Promise<void> {
  const response = await context.client.sendReceipts(
    {
      conversationId: required(context, "conversation"),
      readerId: required(context, "reader"),
      messageIds: messageIds(context),
    },
    context.call,
  );
  if (context.output.json) context.output.out(jsonLine(SendReceiptsResponseSchema, response));
  else for (const receipt of response.receipts) context.output.out(describeReceipt(receipt));
}

export async function get(context: CommandContext): Promise<void> {
  const response = await context.client.getReceipts(
    { conversationId: required(context, "conversation"), messageIds: messageIds(context) },
    context.call,
  );
  if (context.output.json) context.output.out(jsonLine(GetReceiptsResponseSchema, response));
  else for (const receipt of response.receipts) context.output.out(describeReceipt(receipt));
}

/**
 * Prints one page of a listing (--page-size, --page-token), or every page with --all; when
 * more follow, stderr names the token of the next page.
 */
export async function printPages<Page extends { nextPageToken: string; isFinished: boolean }>(
  context: CommandContext,
  fetchPage: (pageSize: number, pageToken: string) => Promise<Page>,
  lines: (page: Page) => readonly string[],
): Promise<void> {
  const pageSize = optional(context, "page-size");
  const size = pageSize === undefined ? 0 : wholeNumber("page-size", pageSize, 1, 1_000);
  let pageToken = optional(context, "page-token") ?? "";
  // Bounded: a listing never has more pages than entries, and --all stops at the last page.
  for (;;) {
    const page = await fetchPage(size, pageToken);
    for (const line of lines(page)) context.output.out(line);
    if (page.isFinished) return;
    if (context.options.all !== true) {
      if (!context.output.json) {
        context.output.err(`more follow: repeat with --page-token ${page.nextPageToken}`);
      }
      return;
    }
    pageToken = page.nextPageToken;
  }
}

/** `readers` (ListReadMembers): who has read a message, or not, page by page. */
export async function readers(context: CommandContext): Promise<void> {
  const filterName = optional(context, "filter") ?? "read";
  if (filterName !== "read" && filterName !== "unread") {
    throw usageError(`--filter ${filterName}: must be read or unread`);
  }
  const conversationId = required(context, "conversation");
  const messageId = required(context, "message");
  const filter = filterName === "read" ? ReadFilter.READ : ReadFilter.UNREAD;
  await printPages(
    context,
    (pageSize, pageToken) =>
      context.client.listReadMembers(
        { conversationId, messageId, filter, pageSize, pageToken },
        context.call,
      ),
    (page) =>
      context.output.json
        ? [jsonLine(ListReadMembersResponseSchema, page)]
        : page.members.map((member) =>
            member.readAt === undefined
              ? member.userId
              : `${member.userId}  read at ${formatTime(member.readAt)}`,
          ),
  );
}

export async function markRead(context: CommandContext): Promise<void> {
  const upTo = optional(context, "up-to");
  const response = await context.client.markConversationRead(
    {
      conversationId: required(context, "conversation"),
      readerId: required(context, "reader"),
      readUpTo: upTo === undefined ? undefined : time("up-to", upTo),
    },
    context.call,
  );
  context.output.out(
    context.output.json
      ? jsonLine(MarkConversationReadResponseSchema, response)
      : `marked ${response.markedCount} message${response.markedCount === 1 ? "" : "s"} read; read up to ${formatTime(response.readUpTo)}`,
  );
}

/**
 * Prints updates as they come until Ctrl-C or --limit updates (heartbeats not
 * counted), reconnecting and resuming through restarts and drains (the client
 * package's watch). Connection events and the token to resume with go to
 * stderr; --json prints every event, each with its resume token, on stdout.
 */
export async function watch(context: CommandContext, stop: AbortSignal): Promise<void> {
  const limitText = optional(context, "limit");
  const limit =
    limitText === undefined ? Number.POSITIVE_INFINITY : wholeNumber("limit", limitText, 1, 1e9);
  const conversations = context.options.conversation;
  const watching = context.watch(
    {
      conversationIds: Array.isArray(conversations) ? conversations : [],
      senderId: optional(context, "sender") ?? "",
      readerId: optional(context, "reader") ?? "",
    },
    { resumeToken: optional(context, "resume-token") ?? "", signal: stop },
  );
  const { output } = context;
  let updates = 0;
  try {
    for await (const event of watching) {
      if (output.json) {
        output.out(watchEventJson(event));
      } else {
        const { line, toStderr } = describeWatchEvent(event);
        if (line !== undefined) (toStderr ? output.err : output.out)(line);
      }
      const isUpdate = ["receipt", "readHorizon", "messageDeleted"].includes(event.type);
      if (isUpdate && ++updates >= limit) break;
    }
  } finally {
    if (!output.json && watching.resumeToken !== "") {
      output.err(`resume with --resume-token ${watching.resumeToken}`);
    }
  }
}
