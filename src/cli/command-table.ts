import type { ParseArgsConfig } from "node:util";
import { type CommandContext, get, markRead, readers, send, track, watch } from "./commands.js";
import { importMessages } from "./import-messages.js";
import { addMembers, listMembers, removeMembers } from "./membership-commands.js";
import { deleteMessages } from "./message-commands.js";
import { getPrivacy, setPrivacy } from "./privacy-commands.js";
import { whoRead } from "./read-members-batch.js";
import { eraseUser, exportUser } from "./user-data-commands.js";
import { webhooks } from "./webhook-commands.js";

/** What the CLI offers: its commands with their options, and the help texts built from them. */

type Options = NonNullable<ParseArgsConfig["options"]>;

export const globalOptions: Options = {
  url: { type: "string" },
  token: { type: "string" },
  key: { type: "string" },
  protocol: { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

export interface Command {
  /** What follows the command's name on its command line. */
  readonly usage: string;
  /** One line: what it does. */
  readonly summary: string;
  readonly example: string;
  readonly options: Options;
  readonly run: (context: CommandContext, stop: AbortSignal) => Promise<void>;
}

const text = { type: "string" } as const;
const paging = { "page-size": text, "page-token": text, all: { type: "boolean" } } as const;

/** Every command by its words; `members add` and its siblings share their first word. */
export const commands: Record<string, Command> = {
  track: {
    usage:
      "--conversation ID --message ID --sender ID [--receiver ID] [--type group|c2c] [--sent-at TIME]",
    summary:
      "Tracks a message that asks for read receipts (a receiver makes it c2c; sent-at defaults to now).",
    example: "receipts track --conversation team --message m1 --sender alice",
    options: {
      conversation: text,
      message: text,
      sender: text,
      receiver: text,
      type: text,
      "sent-at": text,
    },
    run: track,
  },
  send: {
    usage: "--conversation ID --reader ID MESSAGE_ID...",
    summary: "Records that a reader has read messages, and prints their receipts.",
    example: "receipts send --conversation team --reader bob m1 m2",
    options: { conversation: text, reader: text },
    run: send,
  },
  get: {
    usage: "--conversation ID MESSAGE_ID...",
    summary: "Prints the receipts of messages: read by N of M, or read/unread for c2c.",
    example: "receipts get --conversation team m1",
    options: { conversation: text },
    run: get,
  },
  readers: {
    usage:
      "--conversation ID --message ID [--filter read|unread] [--page-size N] [--page-token T] [--all]",
    summary: "Lists who has read a message (or not, with --filter unread), a page at a time.",
    example: "receipts readers --conversation team --message m1 --filter unread --all",
    options: { conversation: text, message: text, filter: text, ...paging },
    run: readers,
  },
  "who-read": {
    usage: "--conversation ID [--page-size N] MESSAGE_ID...",
    summary: "Prints, for up to 50 messages, each receipt and the first page of who has read it.",
    example: "receipts who-read --conversation team m1 m2",
    options: { conversation: text, "page-size": text },
    run: whoRead,
  },
  "mark-read": {
    usage: "--conversation ID --reader ID [--up-to TIME]",
    summary: "Marks a conversation read for a reader, up to a time (default now).",
    example: "receipts mark-read --conversation team --reader carol --up-to 2026-01-02T11:00:00Z",
    options: { conversation: text, reader: text, "up-to": text },
    run: markRead,
  },
  watch: {
    usage: "[--conversation ID]... [--sender ID] [--reader ID] [--resume-token T] [--limit N]",
    summary:
      "Prints receipt updates as they happen; reconnects and resumes until Ctrl-C or --limit updates.",
    example: "receipts watch --conversation team --limit 10",
    options: {
      conversation: { type: "string", multiple: true },
      sender: text,
      reader: text,
      "resume-token": text,
      limit: text,
    },
    run: watch,
  },
  import: {
    usage: "FILE|- [--batch-size N]",
    summary: "Tracks the messages of a JSON-lines file (one TrackedMessage per line; - is stdin).",
    example: "receipts import messages.jsonl",
    options: { "batch-size": text },
    run: importMessages,
  },
  webhooks: {
    usage: "failed|replay|enable|test --tenant ID [--endpoint ID] [--limit N] [WEBHOOK_ID...]",
    summary:
      "Lists failed webhook deliveries, replays them, enables an endpoint again, or sends it a test event (run with the service's environment).",
    example: "receipts webhooks failed --tenant acme --endpoint crm",
    options: { tenant: text, endpoint: text, limit: text },
    run: webhooks,
  },
  "erase-user": {
    usage: "--user ID",
    summary:
      "Erases everything stored about a user (right to erasure), a chunk per call, with progress; run again to go on after an interruption.",
    example: "receipts erase-user --user carol",
    options: { user: text },
    run: eraseUser,
  },
  "export-user": {
    usage: "[--user ID] [--out FILE]",
    summary:
      "Writes everything stored about a user as JSON Lines (right of access): receipts, horizons, memberships, messages.",
    example: "receipts export-user --user carol --out carol.jsonl",
    options: { user: text, out: text },
    run: exportUser,
  },
  "privacy get": {
    usage: "[--user ID]",
    summary:
      "Prints a user's receipt settings: its default, its per-conversation ones, the tenant's policy.",
    example: "receipts privacy get --user bob",
    options: { user: text },
    run: getPrivacy,
  },
  "privacy set": {
    usage:
      "[--user ID] [--default shared|private|inherit] [--conversation ID=shared|private|inherit]...",
    summary:
      "Sets whether a user's reads are shown (shared) or private, by default and per conversation.",
    example: "receipts privacy set --user bob --default private --conversation team=shared",
    options: { user: text, default: text, conversation: { type: "string", multiple: true } },
    run: setPrivacy,
  },
  "members add": {
    usage: "--group ID USER_ID... [--joined-at TIME]",
    summary:
      "Adds users to a group from --joined-at on (default now); current members stay as they are.",
    example: "receipts members add --group team alice bob carol --joined-at 2026-01-02T09:00:00Z",
    options: { group: text, "joined-at": text },
    run: addMembers,
  },
  "members remove": {
    usage: "--group ID USER_ID... [--left-at TIME]",
    summary: "Removes users from a group from --left-at on (default now); non-members are skipped.",
    example: "receipts members remove --group team carol",
    options: { group: text, "left-at": text },
    run: removeMembers,
  },
  "members list": {
    usage: "--group ID [--page-size N] [--page-token T] [--all]",
    summary: "Lists the current members of a group with the time each joined, by user id.",
    example: "receipts members list --group team --all",
    options: { group: text, ...paging },
    run: listMembers,
  },
  "messages delete": {
    usage: "--conversation ID MESSAGE_ID...",
    summary:
      "Deletes messages with their receipts for good (the tenant's API key); unknown ids are skipped.",
    example: "receipts messages delete --conversation team m1 m2",
    options: { conversation: text },
    run: deleteMessages,
  },
};

const commonHelp = `Options for every command, before or after it:
  --url URL            the service (default $RECEIPTS_URL or http://127.0.0.1:8080)
  --token T, --key K   sent as "Authorization: Bearer ..." (default $RECEIPTS_TOKEN)
  --protocol P         connect (default), grpc or grpc-web
  --timeout SECONDS    deadline of each call (default 30; none for watch, export-user)
  --json               results as JSON, one document per line
  -h, --help           help (of a command: receipts <command> --help)

Times are RFC 3339, e.g. 2026-01-02T10:00:00Z.
Exit codes: 0 ok, 1 the server refused the call, 2 bad command line,
3 server unreachable, shutting down or too slow, 4 bad input file.`;

/** The commands whose name starts with `prefix` (all of them for ""), one line each. */
export const commandList = (prefix: string) => {
  const names = Object.keys(commands).filter((name) => name.startsWith(prefix));
  const width = Math.max(...names.map((name) => name.length));
  return names
    .map((name) => `  ${name.padEnd(width)}  ${(commands[name] as Command).summary}`)
    .join("\n");
};

export const usage = `Usage: receipts [options] <command> [command options]

Commands:
${commandList("")}

Run receipts <command> --help for a command's options and an example.

${commonHelp}`;

export const membersUsage = `Usage: receipts members add|remove|list [options]

${commandList("members ")}

Run receipts members <add|remove|list> --help for options and an example. Who has read a
message is \`receipts readers\`.`;

export const privacyUsage = `Usage: receipts privacy get|set [options]

${commandList("privacy ")}

A user token sets and reads only its own settings (--user left out or itself).`;

export function commandHelp(name: string): string {
  const command = commands[name] as Command;
  return `Usage: receipts ${name} ${command.usage}

${command.summary}

Example:
  ${command.example}

${commonHelp}`;
}
