import { afterEach, describe, expect, it, vi } from "vitest";
import { openSqliteDatabase } from "../src/store/sqlite/sqlite-database.js";
import { SqliteWriteBatcher } from "../src/store/sqlite/sqlite-write-batcher.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("group commit of the embedded store's writes", () => {
  const db = openSqliteDatabase(":memory:");
  db.exec("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER)");
  const insert = db.prepare("INSERT OR REPLACE INTO t (k, v) VALUES (?, ?)");
  const value = (k: string) =>
    (db.prepare("SELECT v FROM t WHERE k = ?").get(k) as { v: number } | undefined)?.v;
  const commits = () => {
    const exec = vi.spyOn(db, "exec");
    return () => exec.mock.calls.filter(([sql]) => sql === "COMMIT").length;
  };
  afterEach(() => vi.restoreAllMocks());

  it("writes queued in one turn commit together", async () => {
    const counted = commits();
    await Promise.all([
      new SqliteWriteBatcher(db).write(() => insert.run("a", 1)),
      new SqliteWriteBatcher(db).write(() => insert.run("b", 1)),
    ]);
    const writes = new SqliteWriteBatcher(db);
    await Promise.all([
      writes.write(() => insert.run("c", 1)),
      writes.write(() => insert.run("d", 1)),
    ]);
    expect(counted()).toBe(3);
  });

  it("a deferred write waits for the next write's commit and commits with it, in order", async () => {
    const writes = new SqliteWriteBatcher(db);
    const counted = commits();
    const deferred = writes.writeSoon(() => insert.run("cursor", 1).changes, 10_000);
    await sleep(30);
    expect(value("cursor")).toBeUndefined();
    const regular = writes.write(() => insert.run("cursor", 2).changes);
    expect(await deferred).toBe(1);
    expect(await regular).toBe(1);
    expect(counted()).toBe(1);
    expect(value("cursor")).toBe(2);
  });

  it("a deferred write with no company commits alone once its time is up", async () => {
    const writes = new SqliteWriteBatcher(db);
    const counted = commits();
    const started = performance.now();
    await writes.writeSoon(() => insert.run("alone", 1), 50);
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
    expect(counted()).toBe(1);
    expect(value("alone")).toBe(1);
  });

  it("a deferred write that throws fails alone; the write it rode with commits", async () => {
    const writes = new SqliteWriteBatcher(db);
    const failing = writes.writeSoon(() => {
      insert.run("undone", 1);
      throw new Error("refused");
    }, 10_000);
    await writes.write(() => insert.run("kept", 1));
    await expect(failing).rejects.toThrow("refused");
    expect(value("undone")).toBeUndefined();
    expect(value("kept")).toBe(1);
  });
});
