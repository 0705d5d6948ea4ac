import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join, relative } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..");
const bin = join(root, "node_modules", ".bin");
const env = { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH ?? ""}` };

function filesUnder(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (at: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path);
      else files.set(relative(dir, path), readFileSync(path, "utf8"));
    }
  };
  walk(dir);
  return files;
}

describe("the contract in proto/", () => {
  it("is lint-clean under buf's STANDARD rules", () => {
    expect(() => execFileSync("buf", ["lint"], { cwd: root, env, stdio: "pipe" })).not.toThrow();
  });

  it("matches the committed generated code in gen/ (run `npm run generate` after editing proto/)", () => {
    const out = mkdtempSync(join(tmpdir(), "receipts-gen-"));
    try {
      execFileSync("buf", ["generate", "--output", out], { cwd: root, env, stdio: "pipe" });
      const fresh = filesUnder(join(out, "gen"));
      const committed = filesUnder(join(root, "gen"));
      expect([...committed.keys()].sort()).toEqual([...fresh.keys()].sort());
      for (const [path, text] of fresh) expect(committed.get(path), path).toBe(text);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
