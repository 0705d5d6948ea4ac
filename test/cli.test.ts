import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MembershipService } from "../gen/receipts/v1/membership_pb.js";
import { ReadReceiptService } from "../gen/receipts/v1/receipts_pb.js";
import { buildService, root } from "./support/built-service.js";
import { minutes } from "./support/fixtures.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

describe("the receipts CLI against a running server", () => {
  let build: ReturnType<typeof buildService>;
  let cliPath: string;
  let server: TestServer;
  let work: string;
  const children: ChildProcess[] = [];
  // The shebang runs `env node`: the Node 24 of node_modules/.bin comes first, as under npm.
  const env = () => ({
    ...process.env,
    PATH: `${join(root, "node_modules", ".bin")}${delimiter}${process.env.PATH ?? ""}`,
    RECEIPTS_URL: server.baseUrl,
    RECEIPTS_TOKEN: "",
  });

  /** Runs the built CLI as an executable, as `npm install -g` would leave it. */
  const cli = (args: string[], extraEnv: Record<string, string> = {}): Promise<Run> =>
    new Promise((resolve) => {
      execFile(
        cliPath,
        args,
        { env: { ...env(), ...extraEnv }, timeout: 30_000 },
        (error, stdout, stderr) => {
          const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
          resolve({ code, stdout, stderr });
        },
      );
    });
  const lines = (text: string) => text.split("\n").filter((line) => line !== "");
  /** A command line refused before any call: exit 2, nothing on stdout, `message` on stderr. */
  const refusedUsage = async (args: string[], message: string) => {
    const run = await cli(args);
    expect(run, args.join(" ")).toMatchObject({ code: 2, stdout: "" });
    expect(run.stderr).toContain(message);
  };

  beforeAll(async () => {
    build = buildService("cli");
    cliPath = join(build.dir, "src", "cli", "main.js");
    chmodSync(cliPath, 0o755);
    server = await startTestServer();
    work = mkdtempSync(join(tmpdir(), "receipts-cli-"));
    await createClient(
      MembershipService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    ).addMembers({
      groupId: "g",
      userIds: ["s", "u1", "u2", "u3", "u4", "u5"],
      joinedAt: timestampFromMs(minutes(0)),
    });
  }, 120_000);
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    await server?.stop();
    rmSync(work, { recursive: true, force: true });
    build?.remove();
  });

  it("tracks, sends, gets, lists members page by page and marks read, in human-readable lines", async () => {
    const track = ["track", "--conversation", "g", "--message", "m1", "--sender", "s"];
    const sentAt = ["--sent-at", "2026-01-01T00:01:00Z"];
    expect(await cli([...track, ...sentAt])).toMatchObject({
      code: 0,
      stdout: "tracked 1 new message\n",
    });
    expect((await cli([...track, ...sentAt])).stdout).toBe(
      "already tracked with the same data: nothing changed\n",
    );
    const sent = await cli(["send", "--conversation", "g", "--reader", "u1", "m1"]);
    expect(sent).toMatchObject({ code: 0, stderr: "" });
    expect(sent.stdout).toBe(
      "m1  read by 1 of 5  (group g, from s, sent 2026-01-01T00:01:00.000Z)\n",
    );
    const got = await cli(["get", "--protocol", "grpc", "--conversation", "g", "m1"]);
    expect(got.stdout).toContain("m1  read by 1 of 5");

    const read = await cli(["readers", "--conversation", "g", "--message", "m1"]);
    expect(read.stdout).toMatch(/^u1 {2}read at \d{4}-\d\d-\d\dT/);
    const unread = ["readers", "--conversation", "g", "--message", "m1", "--filter", "unread"];
    const first = await cli([...unread, "--page-size", "2"]);
    expect(lines(first.stdout)).toEqual(["u2", "u3"]);
    const token = /--page-token (\S+)/.exec(first.stderr)?.[1];
    expect(token).toBeDefined();
    const second = await cli([...unread, "--page-size", "2", "--page-token", token ?? ""]);
    expect(lines(second.stdout)).toEqual(["u4", "u5"]);
    expect(second.stderr).toBe("");
    const all = await cli([...unread, "--page-size", "2", "--all"]);
    expect(lines(all.stdout)).toEqual(["u2", "u3", "u4", "u5"]);

    const marked = await cli(["mark-read", "--conversation", "g", "--reader", "u2"]);
    expect(marked.stdout).toMatch(/^marked 1 message read; read up to \d{4}-/);
  });

  it("prints protobuf JSON with --json, one document per line", async () => {
    const got = await cli(["get", "--json", "--conversation", "g", "m1"]);
    expect(JSON.parse(got.stdout)).toEqual({
      receipts: [
        expect.objectContaining({
          messageId: "m1",
          readCount: 2,
          unreadCount: 3,
          receiverRead: false,
        }),
      ],
    });
    const pages = await cli([
      "readers",
      "--json",
      "--all",
      "--page-size",
      "2",
      "--conversation",
      "g",
      "--message",
      "m1",
      "--filter",
      "unread",
    ]);
    const parsed = lines(pages.stdout).map((line) => JSON.parse(line));
    expect(parsed.map((page) => page.members.map((m: { userId: string }) => m.userId))).toEqual([
      ["u3", "u4"],
      ["u5"],
    ]);
    expect(parsed.map((page) => page.isFinished)).toEqual([false, true]);
  });

  it("adds, lists and removes group members with their joined and left times; the audience follows", async () => {
    const add = await cli([
      "members",
      "add",
      "--group",
      "crew",
      "ann",
      "ben",
      "cat",
      "--joined-at",
      "2026-01-01T00:00:00Z",
    ]);
    expect(add).toMatchObject({ code: 0, stdout: "added 3 users to crew\n", stderr: "" });
    const again = await cli(["members", "add", "--group", "crew", "ann", "dan"]);
    expect(again.stdout).toBe("added 1 user to crew (1 user already members or listed twice)\n");

    const listed = await cli(["members", "list", "--group", "crew"]);
    expect(lines(listed.stdout)).toEqual([
      "ann  joined 2026-01-01T00:00:00.000Z",
      "ben  joined 2026-01-01T00:00:00.000Z",
      "cat  joined 2026-01-01T00:00:00.000Z",
      expect.stringMatching(/^dan {2}joined \d{4}-\d\d-\d\dT/),
    ]);
    const firstPage = await cli(["members", "list", "--group", "crew", "--page-size", "3"]);
    expect(lines(firstPage.stdout)).toHaveLength(3);
    const token = /--page-token (\S+)/.exec(firstPage.stderr)?.[1] ?? "";
    const rest = ["members", "list", "--group", "crew", "--page-token", token];
    expect(lines((await cli(rest)).stdout)).toEqual([expect.stringMatching(/^dan /)]);
    const pages = await cli([
      "members",
      "list",
      "--json",
      "--all",
      "--page-size",
      "2",
      "--group",
      "crew",
    ]);
    expect(lines(pages.stdout).map((line) => JSON.parse(line))).toEqual([
      {
        members: [
          { userId: "ann", joinedAt: "2026-01-01T00:00:00Z" },
          { userId: "ben", joinedAt: "2026-01-01T00:00:00Z" },
        ],
        nextPageToken: expect.any(String),
        isFinished: false,
      },
      expect.objectContaining({
        members: [
          expect.objectContaining({ userId: "cat" }),
          expect.objectContaining({ userId: "dan" }),
        ],
        isFinished: true,
      }),
    ]);

    // Cat leaves before the message: the audience is who was a member when it was sent.
    const removed = await cli([
      "members",
      "remove",
      "--json",
      "--group",
      "crew",
      "cat",
      "zed",
      "--left-at",
      "2026-01-02T00:00:00Z",
    ]);
    expect(JSON.parse(removed.stdout)).toEqual({ removedCount: 1 });
    expect((await cli(["members", "remove", "--group", "crew", "zed"])).stdout).toBe(
      "removed 0 users from crew (1 user not members or listed twice)\n",
    );
    const names = lines((await cli(["members", "list", "--group", "crew"])).stdout).map(
      (line) => line.split(" ")[0],
    );
    expect(names).toEqual(["ann", "ben", "dan"]);
    await cli([
      "track",
      "--conversation",
      "crew",
      "--message",
      "crew-1",
      "--sender",
      "ann",
      "--sent-at",
      "2026-01-03T00:00:00Z",
    ]);
    expect((await cli(["get", "--conversation", "crew", "crew-1"])).stdout).toContain(
      "read by 0 of 1",
    );

    await refusedUsage(["members", "add", "--group", "crew"], "give at least one user id");
    await refusedUsage(
      ["members", "remove", "--group", "crew", "ann", "--left-at", "later"],
      "--left-at later: not a time",
    );
    const badGroup = await cli(["members", "add", "--group", "crew", "ann", "tab\there"]);
    expect(badGroup.code).toBe(1);
    expect(badGroup.stderr).toMatch(
      /^receipts: invalid_argument: user_ids\[1\]: must not contain control/,
    );
    const noSub = await cli(["members", "--conversation", "g", "--message", "m1"]);
    expect(noSub.code).toBe(2);
    expect(noSub.stderr).toContain("receipts readers --conversation ID --message ID");
  }, 120_000);

  it("sets and prints a user's receipt settings; a private reader stays unread for others", async () => {
    const set = await cli([
      "privacy",
      "set",
      "--user",
      "u5",
      "--default",
      "private",
      "--conversation",
      "g=private",
      "--conversation",
      "team=shared",
    ]);
    expect(set).toMatchObject({ code: 0, stderr: "" });
    expect(lines(set.stdout)).toEqual([
      "u5: private by default (set); tenant policy c2c user-choice, group user-choice",
      "  g  private",
      "  team  shared",
    ]);
    await cli(["privacy", "set", "--user", "u5", "--conversation", "team=inherit"]);
    const got = await cli(["privacy", "get", "--json", "--user", "u5"]);
    expect(JSON.parse(got.stdout).settings).toMatchObject({
      userId: "u5",
      defaultVisibility: "RECEIPT_VISIBILITY_PRIVATE",
      conversations: [{ conversationId: "g", visibility: "RECEIPT_VISIBILITY_PRIVATE" }],
    });
    await cli(["track", "--conversation", "g", "--message", "private-1", "--sender", "s"]);
    const sent = await cli(["send", "--conversation", "g", "--reader", "u5", "private-1"]);
    expect(sent.stdout).toContain("read by 1 of 5");
    expect((await cli(["get", "--conversation", "g", "private-1"])).stdout).toContain(
      "read by 0 of 5",
    );
    await refusedUsage(["privacy", "set", "--user", "u5"], "give --default");
    await refusedUsage(
      ["privacy", "set", "--user", "u5", "--default", "hidden"],
      "--default hidden: must be shared, private or inherit",
    );
    await refusedUsage(
      ["privacy", "set", "--conversation", "g"],
      "must be ID=shared|private|inherit",
    );
    await refusedUsage(["privacy"], "privacy needs get or set");
    const noUser = await cli(["privacy", "get"]);
    expect(noUser.code).toBe(1);
    expect(noUser.stderr).toMatch(/^receipts: invalid_argument: user_id: must not be empty/);
  }, 120_000);

  it("takes the options of every command before the command as well as after it", async () => {
    const before = await cli([
      "--url",
      server.baseUrl,
      "--json",
      "get",
      "--conversation",
      "g",
      "m1",
    ]);
    expect(before.code).toBe(0);
    expect(JSON.parse(before.stdout).receipts[0].messageId).toBe("m1");
    const mixed = await cli([
      "--protocol=grpc",
      "--timeout",
      "5",
      "members",
      "--url",
      server.baseUrl,
      "list",
      "--group",
      "crew",
    ]);
    expect(mixed).toMatchObject({ code: 0, stderr: "" });
    expect(lines(mixed.stdout)[0]).toMatch(/^ann /);
    // The URL before the command is the one used: a dead one fails as unreachable.
    const dead = await cli(["--url", "http://127.0.0.1:1", "get", "--conversation", "g", "m1"]);
    expect(dead.code).toBe(3);
    const misplaced = await cli(["--conversation", "g", "get", "m1"]);
    expect(misplaced.code).toBe(2);
    expect(misplaced.stderr).toContain("unknown option --conversation before the command");
  });

  it("deletes messages with `messages delete`, says how many, and later calls about them fail", async () => {
    const track = ["track", "--conversation", "g", "--message", "gone1", "--sender", "s"];
    expect((await cli([...track, "--sent-at", "2026-01-01T00:02:00Z"])).code).toBe(0);
    expect((await cli(["send", "--conversation", "g", "--reader", "u1", "gone1"])).code).toBe(0);
    const deleted = await cli(["messages", "delete", "--conversation", "g", "gone1", "never"]);
    expect(deleted).toMatchObject({
      code: 0,
      stdout: "deleted 1 message of g (1 message not tracked or already deleted)\n",
    });
    const again = await cli(["messages", "delete", "--json", "--conversation", "g", "gone1"]);
    expect(JSON.parse(again.stdout)).toEqual({ deletedCount: 0 });
    const got = await cli(["get", "--conversation", "g", "gone1"]);
    expect(got.code).toBe(1);
    expect(got.stderr).toContain("not_found: message_ids[0]");
    await refusedUsage(
      ["messages", "delete", "--conversation", "g"],
      "give at least one message id",
    );
    await refusedUsage(["messages"], "messages needs delete");
  });

  it("has --help for every command, each with its usage and an example of it", async () => {
    const overview = await cli(["--help"]);
    expect(overview.code).toBe(0);
    const names = [
      "track",
      "send",
      "get",
      "readers",
      "who-read",
      "mark-read",
      "watch",
      "import",
      "members add",
      "members remove",
      "members list",
      "messages delete",
    ];
    for (const name of names) expect(overview.stdout).toMatch(new RegExp(`^  ${name} +\\S`, "m"));
    // Each command once, the three ways of asking in turn.
    for (const [i, name] of names.entries()) {
      const words = name.split(" ");
      const help = [
        [...words, "--help"],
        ["help", ...words],
        ["--json", ...words, "-h"],
      ][i % 3];
      const shown = await cli(help ?? []);
      expect(shown, help?.join(" ")).toMatchObject({ code: 0, stderr: "" });
      expect(shown.stdout).toMatch(new RegExp(`^Usage: receipts ${name} `));
      expect(shown.stdout).toMatch(new RegExp(`\nExample:\n  receipts ${name} \\S`));
    }
    const group = await cli(["members", "--help"]);
    expect(lines(group.stdout).filter((line) => line.startsWith("  members "))).toHaveLength(3);
    const bare = await cli([]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain("Usage: receipts");
  }, 120_000);

  it("imports a JSON-lines file in batches, reporting progress on stderr; importing again changes nothing", async () => {
    const file = join(work, "messages.jsonl");
    const messages = Array.from({ length: 2_500 }, (_, i) =>
      JSON.stringify({
        conversationId: "bulk",
        conversationType: "CONVERSATION_TYPE_GROUP",
        messageId: `bulk-${i}`,
        senderId: "s",
        sentAt: new Date(minutes(i)).toISOString(),
      }),
    );
    writeFileSync(file, `${messages.join("\n")}\n\n`);
    const imported = await cli(["import", file]);
    expect(imported.code).toBe(0);
    expect(lines(imported.stderr)).toEqual([
      expect.stringMatching(
        /^imported 1000 messages, 1000 newly tracked \(\d+% of the file read\)$/,
      ),
      expect.stringMatching(/^imported 2000 messages, 2000 newly tracked/),
      "imported 2500 messages, 2500 newly tracked (100% of the file read)",
    ]);
    expect(imported.stdout).toBe(
      `imported 2500 messages from ${file} in 3 batches: 2500 newly tracked, 0 already tracked\n`,
    );
    const client = createClient(
      ReadReceiptService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    );
    const got = await client.getReceipts({
      conversationId: "bulk",
      messageIds: ["bulk-0", "bulk-2499"],
    });
    expect(got.receipts.map((r) => r.messageId)).toEqual(["bulk-0", "bulk-2499"]);

    const again = await cli(["import", "--json", "--batch-size", "500", file]);
    expect(lines(again.stderr)).toHaveLength(5);
    expect(JSON.parse(again.stdout)).toEqual({
      file,
      messages: 2500,
      batches: 5,
      trackedCount: 0,
      alreadyTracked: 2500,
    });
  });

  it("names the bad line of an import: exit 4 for a line that is no message, 1 for one the server refuses", async () => {
    const line = (messageId: string, extra: object = {}) =>
      JSON.stringify({
        conversationId: "bad-import",
        conversationType: "CONVERSATION_TYPE_GROUP",
        messageId,
        senderId: "s",
        sentAt: "2026-01-01T00:00:00Z",
        ...extra,
      });
    const notJson = join(work, "not-json.jsonl");
    writeFileSync(notJson, [line("a"), line("b"), "{oops"].join("\n"));
    const broken = await cli(["import", notJson]);
    expect(broken.code).toBe(4);
    expect(broken.stderr).toContain(`${notJson}:3: not JSON`);

    const refused = join(work, "refused.jsonl");
    writeFileSync(
      refused,
      [line("c1"), line("c2"), line("c3"), line("c4", { conversationType: undefined })].join("\n"),
    );
    const failed = await cli(["import", "--batch-size", "2", refused]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain(
      `${refused}:4: invalid_argument: messages[1].conversation_type`,
    );
    expect(failed.stderr).toContain("the 2 messages before this batch are tracked");
    const got = await createClient(
      ReadReceiptService,
      createGrpcTransport({ baseUrl: server.baseUrl }),
    ).getReceipts({ conversationId: "bad-import", messageIds: ["c1", "c2"] });
    expect(got.receipts).toHaveLength(2);
  });

  /** A `receipts watch` child, with its stdout and stderr lines as they come. */
  function watchChild(args: string[], extraEnv: Record<string, string> = {}) {
    const child = spawn(cliPath, ["watch", ...args], {
      env: { ...env(), ...extraEnv },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    const seen = { stdout: "", stderr: "" };
    child.stdout?.on("data", (chunk: Buffer) => {
      seen.stdout += chunk.toString();
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      seen.stderr += chunk.toString();
    });
    return { child, seen, exited: once(child, "exit") };
  }

  it("watches live and stops after --limit updates, every event with its resume token", async () => {
    await cli(["track", "--conversation", "g", "--message", "w1", "--sender", "s"]);
    const watch = watchChild(["--json", "--conversation", "g", "--limit", "1"]);
    await expect.poll(() => watch.seen.stdout, { timeout: 10_000 }).toContain('"reread"');
    await cli(["send", "--conversation", "g", "--reader", "u3", "w1"]);
    const [code] = await watch.exited;
    expect(code).toBe(0);
    const [live, reread, update] = lines(watch.seen.stdout).map((l) => JSON.parse(l));
    expect(live).toEqual({ live: { resumed: false }, resumeToken: expect.any(String) });
    expect(reread).toEqual({ reread: { reason: "no-token" }, resumeToken: live.resumeToken });
    expect(update).toMatchObject({
      receipt: { readerId: "u3", receipt: { messageId: "w1", readCount: 1 } },
      resumeToken: expect.any(String),
    });
    expect(update.resumeToken).not.toBe(live.resumeToken);
  });

  it("watch reconnects through a restart, resumes, and prints the token to resume with", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "receipts-cli-watch-"));
    let own = await startTestServer({
      RECEIPTS_DATA_DIR: dataDir,
      RECEIPTS_SHUTDOWN_GRACE_SECONDS: "1",
    });
    const port = own.app.port;
    const ownCli = (args: string[]) => cli([...args, "--url", own.baseUrl]);
    try {
      await ownCli([
        "track",
        "--conversation",
        "dm",
        "--message",
        "d1",
        "--sender",
        "s",
        "--receiver",
        "r",
      ]);
      const watch = watchChild(["--conversation", "dm", "--protocol", "grpc"], {
        RECEIPTS_URL: own.baseUrl,
      });
      await expect.poll(() => watch.seen.stderr, { timeout: 10_000 }).toContain("live");
      await own.stop();
      await expect.poll(() => watch.seen.stderr, { timeout: 10_000 }).toContain("reconnecting in");
      own = await startTestServer({ RECEIPTS_DATA_DIR: dataDir, RECEIPTS_PORT: String(port) });
      // Read while the watch may still be away: the resume replays it.
      await ownCli(["send", "--conversation", "dm", "--reader", "r", "d1"]);
      await expect
        .poll(() => watch.seen.stdout, { timeout: 15_000 })
        .toContain("receipt  d1 read by r");
      expect(watch.seen.stderr).toContain("live (resumed)");
      watch.child.kill("SIGINT");
      const [code] = await watch.exited;
      expect(code).toBe(0);
      const token = /resume with --resume-token (\S+)/.exec(watch.seen.stderr)?.[1] ?? "";
      expect(token).not.toBe("");
      expect(lines(watch.seen.stdout)).toHaveLength(1);

      // The printed token resumes after the last update: only what came since.
      await ownCli([
        "track",
        "--conversation",
        "dm",
        "--message",
        "d2",
        "--sender",
        "s",
        "--receiver",
        "r",
      ]);
      await ownCli(["send", "--conversation", "dm", "--reader", "r", "d2"]);
      const again = watchChild(["--conversation", "dm", "--resume-token", token, "--limit", "1"], {
        RECEIPTS_URL: own.baseUrl,
      });
      const [againCode] = await again.exited;
      expect(againCode).toBe(0);
      expect(lines(again.seen.stdout)).toEqual([expect.stringContaining("receipt  d2 read by r")]);
    } finally {
      await own.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);

  it("fails clearly: usage errors exit 2, refused calls 1 with code and field, an unreachable server 3", async () => {
    const unknown = await cli(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command frobnicate");
    await refusedUsage(["get", "m1"], "--conversation is required");
    await refusedUsage(
      ["mark-read", "--conversation", "g", "--reader", "u1", "--up-to", "soon"],
      "--up-to soon: not a time",
    );

    const notFound = await cli(["get", "--conversation", "g", "m1", "nope"]);
    expect(notFound.code).toBe(1);
    expect(notFound.stderr).toBe(
      "receipts: not_found: message_ids[1]: message nope is not tracked\n",
    );
    const asJson = await cli(["get", "--json", "--conversation", "g", "nope"]);
    expect(JSON.parse(asJson.stderr)).toEqual({
      error: {
        code: "not_found",
        message: "message_ids[0]: message nope is not tracked",
        field: "message_ids[0]",
      },
    });

    const unreachable = await cli([
      "get",
      "--url",
      "http://127.0.0.1:1",
      "--conversation",
      "g",
      "m1",
    ]);
    expect(unreachable.code).toBe(3);
    expect(unreachable.stderr).toContain("receipts: unavailable:");
  });

  it("sends --token, --key or $RECEIPTS_TOKEN as an Authorization bearer", async () => {
    const seen: (string | undefined)[] = [];
    const fake = http.createServer((request, response) => {
      seen.push(request.headers.authorization);
      request.resume();
      response.writeHead(401, { "content-type": "application/json" });
      response.end('{"code":"unauthenticated","message":"unknown key"}');
    });
    fake.listen(0, "127.0.0.1");
    await once(fake, "listening");
    const url = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
    try {
      const get = ["get", "--url", url, "--conversation", "g", "m1"];
      const refused = await cli([...get, "--token", "user-token"]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toBe("receipts: unauthenticated: unknown key\n");
      await cli([...get, "--key", "api-key"]);
      await cli(get, { RECEIPTS_TOKEN: "from-env" });
      await cli(get);
      expect(seen).toEqual(["Bearer user-token", "Bearer api-key", "Bearer from-env", undefined]);
    } finally {
      fake.close();
    }
  });
});
