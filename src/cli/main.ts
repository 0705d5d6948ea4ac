#!/usr/bin/env node
import { type ParseArgsConfig, parseArgs } from "node:util";
import { ReceiptsError } from "../../client/src/node.js";
import { CliError, exitCodeFor, exitCodes, usageError } from "./cli-error.js";
import {
  type CommandContext,
  get,
  markRead,
  members,
  send,
  track,
  watch,
  wholeNumber,
} from "./commands.js";
import { connect, type Protocol, protocols } from "./connection.js";
import { importMessages } from "./import-messages.js";
import type { Output } from "./output.js";
import { whoRead } from "./read-members-batch.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

const globalOptions: Options = {
  url: { type: "string" },
  token: { type: "string" },
  key: { type: "string" },
  protocol: { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

interface Command {
  readonly summary: string;
  readonly options: Options;
  readonly run: (context: CommandContext, stop: AbortSignal) => Promise<void>;
}

const text = { type: "string" } as const;

const commands: Record<string, Command> = {
  track: {
    summary:
      "track --conversation ID --message ID --sender ID [--receiver ID] [--type group|c2c] [--sent-at TIME]",
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
    summary: "send --conversation ID --reader ID MESSAGE_ID...",
    options: { conversation: text, reader: text },
    run: send,
  },
  get: {
    summary: "get --conversation ID MESSAGE_ID...",
    options: { conversation: text },
    run: get,
  },
  members: {
    summary:
      "members --conversation ID --message ID [--filter read|unread] [--page-size N] [--page-token T] [--all]",
    options: {
      conversation: text,
      message: text,
      filter: text,
      "page-size": text,
      "page-token": text,
      all: { type: "boolean" },
    },
    run: members,
  },
  "who-read": {
    summary: "who-read --conversation ID [--page-size N] MESSAGE_ID...   (up to 50 messages)",
    options: { conversation: text, "page-size": text },
    run: whoRead,
  },
  "mark-read": {
    summary: "mark-read --conversation ID --reader ID [--up-to TIME]",
    options: { conversation: text, reader: text, "up-to": text },
    run: markRead,
  },
  watch: {
    summary:
      "watch [--conversation ID]... [--sender ID] [--resume-token T] [--limit N]   (reconnects and resumes until Ctrl-C)",
    options: {
      conversation: { type: "string", multiple: true },
      sender: text,
      "resume-token": text,
      limit: text,
    },
    run: watch,
  },
  import: {
    summary: "import FILE|- [--batch-size N]   (JSON lines, one TrackedMessage per line)",
    options: { "batch-size": text },
    run: importMessages,
  },
};

const usage = `Usage: receipts <command> [options]

Commands:
${Object.values(commands)
  .map((command) => `  ${command.summary}`)
  .join("\n")}

Options for every command:
  --url URL            the service (default $RECEIPTS_URL or http://127.0.0.1:8080)
  --token T, --key K   sent as "Authorization: Bearer ..." (default $RECEIPTS_TOKEN)
  --protocol P         connect (default), grpc or grpc-web
  --timeout SECONDS    deadline of each call (default 30; none for watch)
  --json               results as JSON, one document per line
  -h, --help           this help

Times are RFC 3339, e.g. 2026-01-02T10:00:00Z.
Exit codes: 0 ok, 1 the server refused the call, 2 bad command line,
3 server unreachable, shutting down or too slow, 4 bad input file.`;

async function run(argv: readonly string[], output: Output): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    (name === undefined ? output.err : output.out)(usage);
    return name === undefined ? exitCodes.usage : exitCodes.ok;
  }
  const command = commands[name];
  if (command === undefined) throw usageError(`unknown command ${name}`);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...rest],
      options: { ...globalOptions, ...command.options },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw usageError((error as Error).message);
  }
  const options = parsed.values as CommandContext["options"];
  if (options.help === true) {
    output.out(`Usage: receipts ${command.summary}\n\n${usage.slice(usage.indexOf("Options"))}`);
    return exitCodes.ok;
  }
  const protocol = (options.protocol as string | undefined) ?? "connect";
  if (!(protocols as readonly string[]).includes(protocol)) {
    throw usageError(`--protocol ${protocol}: must be one of ${protocols.join(", ")}`);
  }
  const timeout = options.timeout as string | undefined;
  const timeoutMs =
    timeout === undefined
      ? name === "watch"
        ? undefined
        : 30_000
      : wholeNumber("timeout", timeout, 1, 86_400) * 1000;
  const service = connect({
    url: (options.url as string | undefined) ?? process.env.RECEIPTS_URL ?? "http://127.0.0.1:8080",
    protocol: protocol as Protocol,
    token:
      (options.token as string | undefined) ??
      (options.key as string | undefined) ??
      (process.env.RECEIPTS_TOKEN || undefined),
  });

  const stop = new AbortController();
  const interrupt = () => stop.abort();
  process.once("SIGINT", interrupt);
  try {
    await command.run(
      {
        client: service.receipts,
        watch: service.watch,
        options,
        positionals: parsed.positionals,
        output: { ...output, json: options.json === true },
        call: timeoutMs === undefined ? {} : { timeoutMs },
      },
      stop.signal,
    );
  } finally {
    process.off("SIGINT", interrupt);
  }
  return exitCodes.ok;
}

/** One line on stderr (a JSON object with --json), and the exit code for it. */
function report(error: unknown, output: Output, json: boolean): number {
  if (error instanceof CliError) {
    output.err(
      json ? JSON.stringify({ error: { message: error.message } }) : `receipts: ${error.message}`,
    );
    if (error.exitCode === exitCodes.usage && !json) output.err("Run receipts --help for usage.");
    return error.exitCode;
  }
  const connectError = ReceiptsError.from(error);
  const code = connectError.codeName;
  const { field, resumeToken } = connectError;
  if (json) {
    output.err(
      JSON.stringify({ error: { code, message: connectError.rawMessage, field, resumeToken } }),
    );
  } else {
    output.err(`receipts: ${code}: ${connectError.rawMessage}`);
    if (resumeToken !== undefined) output.err(`resume with --resume-token ${resumeToken}`);
  }
  return exitCodeFor(connectError.code);
}

const output: Output = {
  json: false,
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  errIsTerminal: process.stderr.isTTY === true,
};
const argv = process.argv.slice(2);
const exitCode = await run(argv, output).catch((error: unknown) =>
  report(error, output, argv.includes("--json")),
);
// Exit once stdout is flushed: an HTTP/2 session may otherwise keep the process alive.
process.stdout.write("", () => process.exit(exitCode));
