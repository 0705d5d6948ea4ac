import { createReadStream, type ReadStream, statSync } from "node:fs";
import { createInterface } from "node:readline";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { type TrackedMessage, TrackedMessageSchema } from "../../gen/receipts/v1/receipts_pb.js";
import { CliError, exitCodeFor, exitCodes, usageError } from "./cli-error.js";
import { type CommandContext, wholeNumber } from "./commands.js";
import { ProgressLine } from "./progress-line.js";

/** TrackMessages takes at most this many messages per call. */
export const maxBatchSize = 1_000;

interface Batch {
  readonly messages: TrackedMessage[];
  /** The input line of each message, to name it when the server rejects it. */
  readonly lines: number[];
}

/**
 * `receipts import FILE`: tracks the messages of a JSON-lines file (one
 * TrackedMessage per line, in the API's JSON form; "-" reads stdin) in
 * batches of up to 1,000, reporting progress on stderr. Batches already sent
 * stay tracked when a later one fails; since re-tracking the same message is
 * a no-op, running the import again is safe.
 */
export async function importMessages(context: CommandContext): Promise<void> {
  const [file, ...extra] = context.positionals;
  if (file === undefined || extra.length > 0)
    throw usageError("give exactly one FILE (or - for stdin)");
  const sizeText = context.options["batch-size"];
  const batchSize =
    typeof sizeText === "string"
      ? wholeNumber("batch-size", sizeText, 1, maxBatchSize)
      : maxBatchSize;
  const name = file === "-" ? "stdin" : file;
  let input: NodeJS.ReadableStream;
  let totalBytes: number | undefined;
  try {
    if (file === "-") input = process.stdin;
    else {
      totalBytes = statSync(file).size;
      input = createReadStream(file);
    }
  } catch (error) {
    throw new CliError(`${name}: ${(error as Error).message}`, exitCodes.badInput);
  }
  const progress = new Progress(context, totalBytes, input);

  let batch: Batch = { messages: [], lines: [] };
  const totals = { messages: 0, tracked: 0, batches: 0 };
  const flush = async () => {
    if (batch.messages.length === 0) return;
    const sent = batch;
    batch = { messages: [], lines: [] };
    let trackedCount: number;
    try {
      ({ trackedCount } = await context.client.trackMessages(
        { messages: sent.messages },
        context.call,
      ));
    } catch (error) {
      throw inBatch(error, sent, name, totals.messages);
    }
    totals.batches += 1;
    totals.messages += sent.messages.length;
    totals.tracked += trackedCount;
    progress.report(totals.messages, totals.tracked);
  };

  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let lineNumber = 0;
  try {
    for await (const line of lines) {
      lineNumber += 1;
      if (line.trim() === "") continue;
      batch.messages.push(parseLine(line, `${name}:${lineNumber}`));
      batch.lines.push(lineNumber);
      if (batch.messages.length >= batchSize) await flush();
    }
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(`${name}: ${(error as Error).message}`, exitCodes.badInput);
  } finally {
    lines.close();
    progress.end();
  }
  await flush();
  progress.end();

  const summary = {
    file: name,
    messages: totals.messages,
    batches: totals.batches,
    trackedCount: totals.tracked,
    alreadyTracked: totals.messages - totals.tracked,
  };
  context.output.out(
    context.output.json
      ? JSON.stringify(summary)
      : `imported ${summary.messages} messages from ${name} in ${summary.batches} batches: ${summary.trackedCount} newly tracked, ${summary.alreadyTracked} already tracked`,
  );
}

function parseLine(line: string, at: string): TrackedMessage {
  let json: JsonValue;
  try {
    json = JSON.parse(line) as JsonValue;
  } catch (error) {
    throw new CliError(`${at}: not JSON (${(error as Error).message})`, exitCodes.badInput);
  }
  try {
    return fromJson(TrackedMessageSchema, json);
  } catch (error) {
    throw new CliError(
      `${at}: not a tracked message (${(error as Error).message})`,
      exitCodes.badInput,
    );
  }
}

/** Names the input line of the message a batch was rejected for (`messages[i]...`). */
function inBatch(error: unknown, batch: Batch, name: string, before: number): unknown {
  if (!(error instanceof ConnectError)) return error;
  const index = /messages\[(\d+)\]/.exec(error.rawMessage)?.[1];
  const line = index === undefined ? undefined : batch.lines[Number(index)];
  const where =
    line === undefined
      ? `lines ${batch.lines[0]}-${batch.lines.at(-1)} of ${name}`
      : `${name}:${line}`;
  return new CliError(
    `${where}: ${codeToString(error.code)}: ${error.rawMessage} (the ${before} messages before this batch are tracked; importing again is safe)`,
    exitCodeFor(error.code),
    codeToString(error.code),
  );
}

/** Progress on stderr: one line per batch, or one rewritten line on a terminal. */
class Progress {
  readonly #line: ProgressLine;

  constructor(
    context: CommandContext,
    private readonly totalBytes: number | undefined,
    private readonly input: NodeJS.ReadableStream,
  ) {
    this.#line = new ProgressLine(context.output);
  }

  report(messages: number, tracked: number): void {
    const bytes = (this.input as ReadStream).bytesRead;
    const share =
      this.totalBytes === undefined || this.totalBytes === 0 || bytes === undefined
        ? ""
        : ` (${Math.min(100, Math.floor((bytes / this.totalBytes) * 100))}% of the file read)`;
    this.#line.show(`imported ${messages} messages, ${tracked} newly tracked${share}`);
  }

  end(): void {
    this.#line.end();
  }
}
