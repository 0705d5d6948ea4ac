import type { ChainableCommander, Cluster } from "ioredis";

/**
 * On a Redis Cluster, a master answers from its own history until it learns that it was
 * replaced. One paused past its failover (SIGSTOP, a frozen VM) wakes up still running what
 * waited in its sockets: it appends changes its replica, now the master, never gets, and it
 * answers reads with them. A watcher handed such a position, newer than entries of the new
 * master it never read, passes over them when it resumes there: acknowledged receipts are
 * lost to it (test/redis-cluster-faults.test.ts saw a read sent to the paused master before
 * its failover was known, answered after its wake-up, move a tap past an entry of the new
 * master's log).
 *
 * So on a cluster no position is handed out unless a replica holds it too: the commands run
 * in one pipeline followed, on the same connection, by a write of `fenceKey` and `WAIT 1`, and
 * count only when a replica acknowledged the write, so everything before it. The write is
 * needed even after an append: one that appended nothing (its changes already announced, by a
 * master that may have taken them after its failover) writes nothing, and WAIT would answer at
 * once from acknowledgements given before. A master that was replaced has no replica to
 * acknowledge what it does after waking (its replica now leads the slot), so none of it is
 * used; nor is anything while a master has no replica at all, as after its replica took over
 * from a master that died.
 */
export async function confirmedByReplica(
  cluster: Cluster,
  commands: (pipeline: ChainableCommander) => void,
  options: { readonly fenceKey: string; readonly waitMs: number },
): Promise<unknown[]> {
  const pipeline = cluster.pipeline();
  commands(pipeline);
  const issued = pipeline.length;
  // The value does not matter, only that the write goes through the replication stream.
  pipeline.set(options.fenceKey, "1", "PX", fenceLifetimeMs);
  pipeline.wait(1, options.waitMs);
  const replies = (await pipeline.exec()) ?? [];
  const own = replies.slice(0, issued);
  const failed = own.find(([error]) => error !== null)?.[0];
  if (failed) throw failed;
  const [waitError, replicas] = replies.at(-1) ?? [new Error("no reply to WAIT")];
  const fenceError = replies.at(-2)?.[0];
  // Not a ReplyError: the callers take this for the log being unavailable, not for an answer.
  if (fenceError || waitError || Number(replicas) < 1) {
    throw new Error("no replica of the change log's master acknowledged the command", {
      cause: fenceError ?? waitError ?? undefined,
    });
  }
  return own.map(([, reply]) => reply);
}

/** Long enough to outlive any command, short enough not to linger for a quiet tenant. */
const fenceLifetimeMs = 60_000;
