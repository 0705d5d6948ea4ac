import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
} from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildService, root } from "./support/built-service.js";
import { freePort } from "./support/free-port.js";

/**
 * There is no Docker engine here, so the image is replayed: the runtime layer's files are
 * assembled in a clean folder the way the Dockerfile's COPY steps do, and the image's CMD,
 * ENV, USER and HEALTHCHECK (read from the Dockerfile itself) are run there.
 */
interface Stage {
  readonly name: string;
  readonly instructions: readonly { readonly op: string; readonly args: string }[];
}

function parseDockerfile(text: string): Stage[] {
  const stages: { name: string; instructions: { op: string; args: string }[] }[] = [];
  const logical = text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  for (const line of logical) {
    const [op = "", ...rest] = line.split(/\s+/);
    const args = rest.join(" ");
    if (op.toUpperCase() === "FROM") {
      stages.push({ name: /\bAS\s+(\S+)/i.exec(args)?.[1] ?? "", instructions: [] });
    } else {
      stages.at(-1)?.instructions.push({ op: op.toUpperCase(), args });
    }
  }
  return stages;
}

const only = (stage: Stage, op: string) =>
  stage.instructions.filter((instruction) => instruction.op === op).map((i) => i.args);

/** `ENV A=1 B="two"` as a record. */
function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const args of only(stage, "ENV")) {
    for (const [, name, value] of args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) {
      env[name as string] = (value as string).replace(/^"|"$/g, "");
    }
  }
  return env;
}

const nobody = { uid: 65534, gid: 65534 };
const lines = (text: string) => text.split("\n").filter((line) => line !== "");

describe("the container image, replayed from the Dockerfile without Docker", () => {
  const stages = parseDockerfile(readFileSync(join(root, "Dockerfile"), "utf8"));
  const runtime = stages.at(-1) as Stage;
  const imageEnv = envOf(runtime);
  let build: ReturnType<typeof buildService>;
  let work: string;
  let app: string;
  let data: string;
  let bin: string;
  const children: ChildProcess[] = [];

  /** Runs `command` as the image's USER (nobody here), in WORKDIR, with the image's ENV. */
  function runInImage(command: readonly string[], env: Record<string, string>): ChildProcess {
    const [file = "", ...args] = command;
    const child = spawn(file, args, {
      cwd: app,
      // The image's environment only: nothing of this machine's but a PATH to its Node.
      env: { PATH: `${bin}:/usr/bin:/bin`, HOME: "/nonexistent", ...imageEnv, ...env },
      uid: nobody.uid,
      gid: nobody.gid,
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    return child;
  }

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "receipts-image-"));
    // mkdtemp makes it private to root; the image's files are readable by everyone.
    chmodSync(work, 0o755);
    app = join(work, "app");
    mkdirSync(app);
    // The build stage's output: dist/ compiled as its tsc step does.
    build = buildService("container");
    // The runtime-modules stage, its RUN step run as written (from npm's cache when it can).
    const modules = join(work, "runtime-modules");
    mkdirSync(modules);
    const modulesStage = stages.find((stage) => stage.name === "runtime-modules") as Stage;
    for (const file of ["package.json", "package-lock.json"]) {
      cpSync(join(root, file), join(modules, file));
    }
    for (const step of only(modulesStage, "RUN")) {
      await new Promise<void>((resolve, reject) =>
        execFile(
          "sh",
          ["-c", step],
          {
            cwd: modules,
            env: { ...process.env, npm_config_prefer_offline: "true" },
            timeout: 300_000,
          },
          (error, _stdout, stderr) =>
            error === null ? resolve() : reject(new Error(`${step}: ${stderr}`)),
        ),
      );
    }
    // The final stage's COPY steps, from the stage each names.
    const sources: Record<string, (path: string) => string> = {
      "runtime-modules": (path) => join(modules, path),
      build: (path) => (path === "dist" ? build.dir : join(root, path)),
    };
    for (const args of only(runtime, "COPY")) {
      const [, from = "", source = "", target = ""] =
        /^--from=(\S+)\s+\/app\/(\S+)\s+(\S+)$/.exec(args) ?? [];
      const resolve = sources[from];
      if (resolve === undefined) throw new Error(`COPY this replay does not know: ${args}`);
      const destination = join(app, target === "./" ? source : target);
      cpSync(resolve(source), destination, { recursive: true, dereference: true });
    }
    // RUN mkdir -p /data && chown node:node /data, and VOLUME /data: a folder of its own here.
    data = join(work, "data");
    mkdirSync(data);
    chownSync(data, nobody.uid, nobody.gid);
    // The base image's /usr/local/bin/node: this machine's Node 24, outside the app. Copied, not
    // linked: the repository may sit in a folder the image's user cannot enter (a private clone).
    bin = join(work, "bin");
    mkdirSync(bin);
    copyFileSync(process.execPath, join(bin, "node"));
    chmodSync(join(bin, "node"), 0o755);
  }, 600_000);

  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    build?.remove();
    rmSync(work, { recursive: true, force: true });
  });

  it("holds no `node` npm package, no devDependency, and runs as the unprivileged node user", () => {
    expect(existsSync(join(app, "node_modules", "node"))).toBe(false);
    expect(existsSync(join(app, "node_modules", ".bin", "node"))).toBe(false);
    for (const dev of ["typescript", "vitest", "@biomejs/biome", "vite"]) {
      expect(existsSync(join(app, "node_modules", dev)), dev).toBe(false);
    }
    expect(existsSync(join(app, "node_modules", "pino-pretty"))).toBe(true);
    expect(existsSync(join(app, "dist", "src", "main.js"))).toBe(true);
    expect(existsSync(join(app, "src", "store", "cassandra", "schema"))).toBe(true);
    expect(only(runtime, "USER")).toEqual(["node"]);
    expect(only(runtime, "RUN")).toEqual(["mkdir -p /data && chown node:node /data"]);
    expect(imageEnv).toMatchObject({ RECEIPTS_HOST: "0.0.0.0", RECEIPTS_DATA_DIR: "/data" });
    // The build installs with npm ci: .ci/run's claim that this lock fails with it did not hold.
    expect(only(stages[0] as Stage, "RUN")[0]).toMatch(/^npm ci /);
  });

  it("refuses to start without tenants, since it listens on 0.0.0.0", async () => {
    const child = runInImage(JSON.parse(only(runtime, "CMD")[0] ?? "[]"), {
      RECEIPTS_DATA_DIR: data,
    });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const [code] = await once(child, "close");
    expect(code, stderr).toBe(2);
    expect(stderr).toContain("RECEIPTS_HOST=0.0.0.0: without tenants");
  });

  it("with tenants: listens on every address, writes its store as node, is healthy, answers calls, stops on SIGTERM", async () => {
    const apiKey = "image-test-key-".padEnd(40, "x");
    const port = await freePort();
    const env = {
      // docker run -e RECEIPTS_TENANTS=… -v data:/data, and -p to a port free here.
      RECEIPTS_TENANTS: JSON.stringify({ tenants: [{ id: "acme", apiKeys: [apiKey] }] }),
      RECEIPTS_DATA_DIR: data,
      RECEIPTS_PORT: String(port),
    };
    const child = runInImage(JSON.parse(only(runtime, "CMD")[0] ?? "[]"), env);
    let stdout = "";
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        if (stdout.includes('"url"')) resolve();
      });
      child.once("close", (code) => reject(new Error(`exited with ${code}: ${stdout}${stderr}`)));
    });
    const started = lines(stdout)
      .map((line) => JSON.parse(line))
      .find((line) => line.url !== undefined);
    expect(started).toMatchObject({ host: "0.0.0.0", port, store: "embedded" });

    // HEALTHCHECK, run as written: its command's exit code.
    const healthcheck = only(runtime, "HEALTHCHECK")[0] ?? "";
    const command = JSON.parse(/\bCMD\s+(\[.*\])$/.exec(healthcheck)?.[1] ?? "[]");
    const healthy = runInImage(command, env);
    expect((await once(healthy, "close"))[0]).toBe(0);

    const call = (host: string, headers: Record<string, string>) =>
      fetch(`http://${host}:${port}/receipts.v1.MembershipService/AddMembers`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: '{"groupId":"team","userIds":["alice"]}',
      });
    const answered = await call("127.0.0.1", { authorization: `Bearer ${apiKey}` });
    expect(answered.status).toBe(200);
    expect(await answered.json()).toEqual({ addedCount: 1 });
    expect((await call("127.0.0.1", {})).status).toBe(401);
    // Reachable on this machine's other addresses too, as from outside a container.
    const external = Object.values(networkInterfaces())
      .flat()
      .find((address) => address?.family === "IPv4" && !address.internal)?.address;
    if (external !== undefined) {
      expect((await call(external, { authorization: `Bearer ${apiKey}` })).status).toBe(200);
    }
    expect(statSync(join(data, "receipts.db")).uid).toBe(nobody.uid);

    child.kill("SIGTERM");
    expect((await once(child, "close"))[0]).toBe(0);
  });
});
