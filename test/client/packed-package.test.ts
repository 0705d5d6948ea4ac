import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type StaticServer, startStaticServer } from "../../scripts/demo.js";
import { chromiumPath, hasChromium, launchChromium } from "../e2e/support/chromium.js";
import { DemoService } from "../e2e/support/demo-service.js";
import { node, root } from "../support/built-service.js";

const bin = join(root, "node_modules", ".bin");
const env = { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH ?? ""}` };
const fixtures = join(import.meta.dirname, "packed-app");

/**
 * The client package as its users get it: `npm pack`, installed from the
 * tarball into a project of its own, then used from Node (plain JavaScript,
 * against the real service, restarted under it) and from a page bundled by
 * Vite in Chromium.
 */
describe("the packed client package, installed into a fresh project", () => {
  let work: string;
  let app: string;
  let tarball: string;
  const services: DemoService[] = [];
  const children: ChildProcess[] = [];
  /** A service of its own for each test, restartable on its port. */
  const newService = () => {
    const service = new DemoService();
    services.push(service);
    return service;
  };

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "receipts-client-pack-"));
    execFileSync("npm", ["pack", "--pack-destination", work], {
      cwd: join(root, "client"),
      env,
      stdio: "pipe",
    });
    tarball = join(work, readdirSync(work).find((name) => name.endsWith(".tgz")) ?? "");
    app = join(work, "app");
    cpSync(fixtures, app, { recursive: true });
    writeFileSync(
      join(app, "package.json"),
      JSON.stringify({ name: "uses-receipts", private: true, type: "module" }),
    );
    execFileSync("npm", ["install", "--no-audit", "--no-fund", tarball], {
      cwd: app,
      env,
      stdio: "pipe",
    });
  }, 180_000);
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    for (const service of services) await service.dispose();
    rmSync(work, { recursive: true, force: true });
  });

  const seed = async (service: DemoService) => {
    await service.seedGroup({
      groupId: "pk",
      members: ["s", "a", "b", "c", "d"],
      senderId: "s",
      count: 1,
    });
  };
  const read = async (service: DemoService, readerId: string) => {
    const client = await service.userClient(readerId);
    await client.sendReceipts({ conversationId: "pk", readerId, messageIds: ["pk-0"] });
  };

  it("ships compiled code, declarations and the generated contract; nothing else", () => {
    const listing = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" })
      .split("\n")
      .filter(Boolean);
    expect(listing).toContain("package/dist/client/src/node.js");
    expect(listing).toContain("package/dist/client/src/browser.d.ts");
    expect(listing).toContain("package/dist/gen/receipts/v1/receipts_pb.js");
    expect(listing).toContain("package/dist/gen/google/rpc/error_details_pb.js");
    expect(
      listing.filter(
        (path) => !/^package\/(dist\/.*\.(js|d\.ts)|package\.json|README\.md)$/.test(path),
      ),
    ).toEqual([]);
    const manifest = JSON.parse(
      readFileSync(join(app, "node_modules", "@read-receipts", "client", "package.json"), "utf8"),
    );
    expect(Object.keys(manifest.dependencies).sort()).toEqual([
      "@bufbuild/protobuf",
      "@connectrpc/connect",
      "@connectrpc/connect-node",
      "@connectrpc/connect-web",
    ]);
  });

  it("type-checks a TypeScript user's code against its declarations, for Node and for bundlers", () => {
    const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
    const common = [
      "--noEmit",
      "--strict",
      "--skipLibCheck",
      "--target",
      "es2022",
      "--lib",
      "es2022,dom",
    ];
    for (const resolution of [
      ["--module", "nodenext", "--moduleResolution", "nodenext"],
      ["--module", "esnext", "--moduleResolution", "bundler", "--customConditions", "browser"],
    ]) {
      const result = (() => {
        try {
          return execFileSync(node, [tsc, ...common, ...resolution, "check-types.ts"], {
            cwd: app,
            encoding: "utf8",
          });
        } catch (error) {
          return String((error as { stdout?: string }).stdout);
        }
      })();
      expect(result, resolution.join(" ")).toBe("");
    }
  });

  for (const protocol of ["grpc", "connect"] as const) {
    it(`serves a Node backend over ${protocol}: typed errors, and a watch that resumes through a restart`, async () => {
      const service = newService();
      await service.start();
      await seed(service);
      const child = spawn(node, ["node-app.mjs"], {
        cwd: app,
        env: {
          ...process.env,
          BASE_URL: service.baseUrl,
          PROTOCOL: protocol,
          API_KEY: (service.tenant.serviceHeaders.authorization ?? "").replace("Bearer ", ""),
          USER_TOKEN: await service.tenant.mintUserToken("s"),
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      children.push(child);
      let output = "";
      let errors = "";
      child.stdout?.on("data", (chunk: Buffer) => {
        output += chunk.toString();
      });
      child.stderr?.on("data", (chunk: Buffer) => {
        errors += chunk.toString();
      });
      const seen = () =>
        output
          .split("\n")
          .filter(Boolean)
          .map((line) => JSON.parse(line) as Record<string, unknown>);
      const receipts = () =>
        seen()
          .filter((line) => line.type === "receipt")
          .map((line) => line.readerId);

      await expect
        .poll(() => seen().find((line) => line.type === "reread"), { timeout: 15_000 })
        .toBeTruthy();
      await read(service, "a");
      await expect.poll(receipts, { timeout: 5_000 }).toEqual(["a"]);
      await service.stop();
      await read(service, "b").catch(() => undefined); // refused: the service is down
      await expect
        .poll(() => seen().some((line) => line.type === "reconnecting"), { timeout: 5_000 })
        .toBe(true);
      await service.start();
      await read(service, "b");
      await expect
        .poll(() => seen().filter((line) => line.type === "live").length, { timeout: 15_000 })
        .toBe(2);
      await read(service, "c");
      await expect.poll(receipts, { timeout: 5_000 }).toEqual(["a", "b", "c"]);

      const lines = seen();
      expect(lines[0]).toEqual({
        typedError: true,
        code: "invalid_argument",
        field: "messages[0].message_id",
      });
      expect(lines.find((line) => line.type === "reconnecting")).toMatchObject({
        code: "unavailable",
        hasToken: true,
      });
      expect(lines.filter((line) => line.type === "live")).toEqual([
        { type: "live", resumed: false },
        { type: "live", resumed: true },
      ]);
      expect(lines.filter((line) => line.type === "reread")).toEqual([
        { type: "reread", reason: "no-token", readCount: 0 },
      ]);
      expect(errors).toBe("");
      child.kill("SIGTERM");
    }, 60_000);
  }

  describe(`in Chromium (${chromiumPath}), bundled by Vite`, () => {
    let web: StaticServer;
    let browser: Browser;
    let bundle: string;

    beforeAll(async () => {
      if (!hasChromium) return;
      const outDir = join(work, "page-dist");
      await build({
        root: join(app, "page"),
        configFile: false,
        logLevel: "warn",
        build: { outDir, emptyOutDir: true, target: "es2022" },
      });
      bundle = readdirSync(join(outDir, "assets"))
        .filter((name) => name.endsWith(".js"))
        .map((name) => readFileSync(join(outDir, "assets", name), "utf8"))
        .join("\n");
      web = await startStaticServer({ dir: outDir });
      browser = await launchChromium();
    }, 120_000);
    afterAll(async () => {
      await browser?.close();
      await web?.close();
    });

    it.skipIf(!hasChromium)("bundles the browser build only: no Node transport in the page", () => {
      // connect-web's gRPC-Web transport is in; connect-node's HTTP/2 client is not.
      expect(bundle).toContain("application/grpc-web");
      expect(bundle).not.toMatch(/node:http2|from "http2"/);
    });

    for (const protocol of ["connect", "grpc-web"] as const) {
      it.skipIf(!hasChromium)(
        `follows the watch over ${protocol} through a restart, each receipt once`,
        async () => {
          const service = newService();
          await service.start({ env: { RECEIPTS_CORS_ORIGINS: web.origin } });
          await seed(service);
          const context = await browser.newContext();
          const page: Page = await context.newPage();
          try {
            const query = new URLSearchParams({
              server: service.baseUrl,
              protocol,
              token: await service.tenant.mintUserToken("s"),
            });
            await page.goto(`${web.origin}/?${query}`);
            const events = () =>
              page.evaluate(() => (globalThis as unknown as { events: string[] }).events ?? []);
            await expect.poll(events, { timeout: 15_000 }).toEqual(["live", "reread:no-token"]);
            expect(
              await page.evaluate(() => (globalThis as Record<string, unknown>).typedError),
            ).toEqual({
              typed: true,
              code: "invalid_argument",
              field: "message_ids[0]",
            });
            expect(
              await page.evaluate(() => (globalThis as Record<string, unknown>).grpcRefused),
            ).toMatch(/browsers cannot read gRPC's HTTP\/2 trailers/);
            await read(service, "a");
            await expect.poll(events, { timeout: 5_000 }).toContain("receipt:pk-0:a");
            await service.stop();
            await expect
              .poll(async () => (await events()).some((e) => e.startsWith("reconnecting:")), {
                timeout: 5_000,
              })
              .toBe(true);
            await service.start({ env: { RECEIPTS_CORS_ORIGINS: web.origin } });
            await read(service, "b");
            await expect
              .poll(async () => (await events()).includes("live:resumed"), { timeout: 15_000 })
              .toBe(true);
            await read(service, "c");
            await expect
              .poll(async () => (await events()).filter((e) => e.startsWith("receipt:")), {
                timeout: 5_000,
              })
              .toEqual(["receipt:pk-0:a", "receipt:pk-0:b", "receipt:pk-0:c"]);
            expect((await events()).filter((e) => e.startsWith("reread"))).toEqual([
              "reread:no-token",
            ]);
          } finally {
            await context.close();
          }
        },
        60_000,
      );
    }
  });
});
