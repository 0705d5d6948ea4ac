import { createWriteStream, type WriteStream } from "node:fs";
import { finished } from "node:stream/promises";
import {
  type EraseUserResponse,
  EraseUserResponseSchema,
  ExportUserDataResponseSchema,
} from "../../gen/receipts/v1/user_data_pb.js";
import { CliError, exitCodes } from "./cli-error.js";
import { type CommandContext, optional, required } from "./commands.js";
import { formatTime, jsonLine } from "./output.js";
import { ProgressLine } from "./progress-line.js";

/** Cells of the progress bar: one share per step of the erasure. */
const barWidth = 24;

/**
 * `erase-user --user ID` (EraseUser): calls again and again until the service says done, each
 * call a bounded chunk; progress on stderr, a bar on a terminal, one line per call otherwise.
 * Ctrl-C stops between calls: the service keeps the progress, running it again goes on.
 */
export async function eraseUser(context: CommandContext, stop: AbortSignal): Promise<void> {
  const userId = required(context, "user");
  const progress = new ProgressLine(context.output);
  let answer: EraseUserResponse | undefined;
  let calls = 0;
  try {
    while (!answer?.done) {
      if (stop.aborted) {
        throw new CliError(
          `interrupted after ${calls} calls; the erasure of ${userId} is under way, run this again to go on`,
          exitCodes.unavailable,
        );
      }
      answer = await context.userData.eraseUser({ userId }, context.call);
      calls++;
      progress.show(erasureProgressText(userId, answer, calls, context.output.errIsTerminal));
    }
  } finally {
    progress.end();
  }
  if (context.output.json) {
    context.output.out(jsonLine(EraseUserResponseSchema, answer));
    return;
  }
  context.output.out(
    `erased ${userId} in ${calls} call${calls === 1 ? "" : "s"} (finished ${formatTime(answer.finishedAt)}): ${counts(answer)}`,
  );
}

/** One progress line: the bar (a share per step) on a terminal, then the step and the counts. */
export function erasureProgressText(
  userId: string,
  answer: EraseUserResponse,
  calls: number,
  bar: boolean,
): string {
  const steps = Object.keys(answer.removed);
  const at = answer.done ? steps.length : Math.max(0, steps.indexOf(answer.step));
  const state = answer.done ? "done" : `step ${at + 1}/${steps.length} ${answer.step}`;
  const text = `erasing ${userId}: call ${calls}, ${state}; removed ${counts(answer)}`;
  if (!bar) return text;
  const filled = Math.round((at / Math.max(1, steps.length)) * barWidth);
  return `[${"#".repeat(filled)}${"-".repeat(barWidth - filled)}] ${text}`;
}

const counts = (answer: EraseUserResponse): string =>
  Object.entries(answer.removed)
    .map(([step, n]) => `${n} ${step.replaceAll("_", " ")}`)
    .join(", ");

/**
 * `export-user [--user ID] [--out FILE]` (ExportUserData): everything stored about the user,
 * one JSON document per line (JSON Lines) on stdout or in FILE; a count per kind on stderr.
 */
export async function exportUser(context: CommandContext, stop: AbortSignal): Promise<void> {
  const userId = optional(context, "user") ?? "";
  const outPath = optional(context, "out");
  let file: WriteStream | undefined;
  if (outPath !== undefined) {
    file = createWriteStream(outPath, { flags: "wx" });
    await new Promise<void>((resolve, reject) => {
      file?.once("open", () => resolve());
      file?.once("error", (error) =>
        reject(new CliError(`--out ${outPath}: ${error.message}`, exitCodes.badInput)),
      );
    });
  }
  const write = (line: string) => (file ? file.write(`${line}\n`) : context.output.out(line));
  const kinds = new Map<string, number>();
  try {
    for await (const record of context.userData.exportUserData(
      { userId },
      { ...context.call, signal: stop },
    )) {
      write(jsonLine(ExportUserDataResponseSchema, record));
      const kind = record.record.case ?? "unknown";
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
  } finally {
    if (file) {
      file.end();
      await finished(file);
    }
  }
  const total = [...kinds.values()].reduce((a, b) => a + b, 0);
  const detail = [...kinds].map(([kind, n]) => `${n} ${kind}`).join(", ");
  context.output.err(
    `exported ${total} record${total === 1 ? "" : "s"}${userId === "" ? "" : ` of ${userId}`}${detail === "" ? "" : ` (${detail})`}${outPath === undefined ? "" : ` to ${outPath}`}`,
  );
}
