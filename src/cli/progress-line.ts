import type { Output } from "./output.js";

/** Progress on stderr: one rewritten line on a terminal, else one line per report. */
export class ProgressLine {
  readonly #output: Output;
  #open = false;

  constructor(output: Output) {
    this.#output = output;
  }

  show(line: string): void {
    if (this.#output.errIsTerminal) {
      process.stderr.write(`\r\u001b[2K${line}`);
      this.#open = true;
    } else {
      this.#output.err(line);
    }
  }

  end(): void {
    if (this.#open) process.stderr.write("\n");
    this.#open = false;
  }
}
