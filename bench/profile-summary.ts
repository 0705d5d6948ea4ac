import { readFileSync } from "node:fs";
import { relative } from "node:path";

/**
 * `node dist/bench/profile-summary.js <file.cpuprofile> [top]`: the functions
 * with the most self time in a V8 CPU profile (from `--cpu-prof`), as a table.
 */
interface ProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
  readonly children?: readonly number[];
}
interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

const [file, topArg] = process.argv.slice(2);
if (file === undefined) throw new Error("usage: profile-summary <file.cpuprofile> [top]");
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const self = new Map<string, number>();
const byPlace = new Map<string, number>();
let total = 0;
profile.samples.forEach((id, i) => {
  const node = byId.get(id);
  const delta = profile.timeDeltas[i] ?? 0;
  total += delta;
  if (node === undefined) return;
  const { functionName, url, lineNumber } = node.callFrame;
  const where =
    url === "" ? "" : ` ${relative(process.cwd(), url.replace("file://", ""))}:${lineNumber + 1}`;
  const key = `${functionName || "(anonymous)"}${where}`;
  self.set(key, (self.get(key) ?? 0) + delta);
  const place = placeOf(url, functionName);
  byPlace.set(place, (byPlace.get(place) ?? 0) + delta);
});
/** Where self time was spent: a package, a folder of ours, Node itself, or V8's own. */
function placeOf(url: string, functionName: string): string {
  if (url === "") return functionName.startsWith("(") ? functionName : "(native)";
  const inPackage = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (inPackage?.[1] !== undefined) return inPackage[1];
  if (url.startsWith("node:")) return "node: internals";
  const ours = /dist\/((?:src|bench|gen)\/[^/]+)/.exec(url);
  return ours?.[1] ?? url;
}

const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 25));
process.stdout.write(
  `total ${(total / 1e6).toFixed(1)} s sampled\n| self % | self ms | function |\n|---|---|---|\n`,
);
for (const [key, micros] of top) {
  process.stdout.write(
    `| ${((100 * micros) / total).toFixed(1)} | ${(micros / 1000).toFixed(0)} | \`${key}\` |\n`,
  );
}
process.stdout.write("\n| self % | where |\n|---|---|\n");
for (const [place, micros] of [...byPlace].sort((a, b) => b[1] - a[1]).slice(0, 20)) {
  process.stdout.write(`| ${((100 * micros) / total).toFixed(1)} | \`${place}\` |\n`);
}
