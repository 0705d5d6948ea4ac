import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";

export const root = join(import.meta.dirname, "..", "..");
/** Node 24 from the `node` package, whatever the machine's own node is. */
export const node = join(root, "node_modules", ".bin", "node");

/**
 * Compiles src/ and gen/ as `npm run build` does, into a folder of its own
 * under dist/, so that test files building at the same time never read each
 * other's half-written output. Returns that folder; `remove()` deletes it.
 */
export function buildService(name: string): { readonly dir: string; remove(): void } {
  const dir = join(root, "dist", "test-builds", `${name}-${process.pid}`);
  const result = spawnSync(
    node,
    [
      join(root, "node_modules", "typescript", "bin", "tsc"),
      "-p",
      "tsconfig.build.json",
      "--outDir",
      dir,
    ],
    { cwd: root, encoding: "utf8" },
  );
  // Type errors elsewhere in the tree still emit JavaScript; only a missing output is fatal.
  if (!existsSync(join(dir, "src", "main.js"))) {
    throw new Error(`build failed:\n${result.stdout}${result.stderr}`);
  }
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly baseUrl: string;
}

/**
 * Starts a built service (`<dir>/src/main.js`) as `npm start` does, on a free port; resolves
 * once it logs the port it listens on, or rejects with its exit code and output.
 */
export function startBuiltService(
  dir: string,
  env: Record<string, string>,
): Promise<ServiceProcess> {
  const child = spawn(node, [join(dir, "src", "main.js")], {
    env: { ...process.env, RECEIPTS_PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  return new Promise((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const port = /"port":(\d+)/.exec(output)?.[1];
      if (port !== undefined) {
        resolve({ child, port: Number(port), baseUrl: `http://127.0.0.1:${port}` });
      }
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once("exit", (code) => reject(new Error(`exited with ${code}: ${output}`)));
  });
}
