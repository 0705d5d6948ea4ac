#!/usr/bin/env node
import { parseArgs } from "node:util";
import { ReceiptsError } from "../../client/src/node.js";
import { CliError, exitCodeFor, exitCodes, usageError } from "./cli-error.js";
import {
  commandHelp,
  commandList,
  commands,
  globalOptions,
  membersUsage,
  privacyUsage,
  usage,
} from "./command-table.js";
import { type CommandContext, wholeNumber } from "./commands.js";
import { connect, type Protocol, protocols } from "./connection.js";
import type { Output } from "./output.js";

/**
 * Index of the first command word at or after `from`, skipping the global options before it;
 * another option there is refused, or (`stopAtOthers`) ends the search without a word.
 */
function nextWord(argv: readonly string[], from: number, stopAtOthers = false): number {
  let i = from;
  for (; i < argv.length; i++) {
    const token = argv[i] as string;
    if (!token.startsWith("-") || token === "-") return i;
    const name = token.replace(/^--?/, "").split("=")[0] ?? "";
    const option =
      globalOptions[name] ?? Object.values(globalOptions).find((o) => o.short === name);
    if (option === undefined) {
      if (stopAtOthers) return argv.length;
      throw usageError(`unknown option ${token} before the command`);
    }
    if (option.type === "string" && !token.includes("=")) i++;
  }
  return i;
}

/** The command's words (`get`, `members add`) and the other arguments, wherever they sit. */
function splitCommand(argv: readonly string[]): { name: string; rest: string[] } | undefined {
  const first = nextWord(argv, 0);
  const word = argv[first];
  if (word === undefined) return undefined;
  const at = [first];
  let name = word;
  if (word === "members" || word === "privacy" || word === "messages") {
    const second = nextWord(argv, first + 1, true);
    if (commands[`${word} ${argv[second]}`] !== undefined) {
      at.push(second);
      name = `${word} ${argv[second]}`;
    }
  }
  return { name, rest: argv.filter((_, i) => !at.includes(i)) };
}

const wantsHelp = (args: readonly string[]) => args.includes("--help") || args.includes("-h");

async function run(argv: readonly string[], output: Output): Promise<number> {
  const split = splitCommand(argv);
  if (split === undefined) {
    (wantsHelp(argv) ? output.out : output.err)(usage);
    return wantsHelp(argv) ? exitCodes.ok : exitCodes.usage;
  }
  const { name, rest } = split;
  // `receipts help [command]` is `receipts [command] --help`.
  if (name === "help") return run([...rest, "--help"], output);
  if (name === "members") {
    if (wantsHelp(rest)) {
      output.out(membersUsage);
      return exitCodes.ok;
    }
    throw usageError(
      rest.includes("--message")
        ? "members needs add, remove or list; who has read a message is `receipts readers --conversation ID --message ID`"
        : "members needs add, remove or list",
    );
  }
  if (name === "privacy") {
    if (wantsHelp(rest)) {
      output.out(privacyUsage);
      return exitCodes.ok;
    }
    throw usageError("privacy needs get or set");
  }
  if (name === "messages") {
    if (wantsHelp(rest)) {
      output.out(`Usage: receipts messages delete [options]\n\n${commandList("messages ")}`);
      return exitCodes.ok;
    }
    throw usageError("messages needs delete");
  }
  const command = commands[name];
  if (command === undefined) throw usageError(`unknown command ${name}`);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      options: { ...globalOptions, ...command.options },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw usageError((error as Error).message);
  }
  const options = parsed.values as CommandContext["options"];
  if (options.help === true) {
    output.out(commandHelp(name));
    return exitCodes.ok;
  }
  const protocol = (options.protocol as string | undefined) ?? "connect";
  if (!(protocols as readonly string[]).includes(protocol)) {
    throw usageError(`--protocol ${protocol}: must be one of ${protocols.join(", ")}`);
  }
  const timeout = options.timeout as string | undefined;
  const timeoutMs =
    timeout === undefined
      ? name === "watch" || name === "export-user"
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
        membership: service.membership,
        userData: service.userData,
        privacy: service.privacy,
        lifecycle: service.lifecycle,
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
