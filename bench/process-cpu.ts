import { readdirSync, readFileSync } from "node:fs";

/**
 * CPU time spent by the processes a scenario depends on, read from /proc.
 * Throughput on a shared two-core machine swings by tens of percent between
 * runs, while CPU time per receipt of each process barely moves: it says which
 * process to make cheaper, and whether a change did.
 */
export interface CpuSpent {
  /** Microseconds of CPU (user + system) by process role, for those found. */
  readonly byProcess: Readonly<Record<string, number>>;
  /** Microseconds of CPU the whole machine was busy (every core, every process). */
  readonly machine: number;
  readonly wallMs: number;
}

/** The /proc times are in USER_HZ ticks, which Linux fixes at 100 per second for user space. */
const microsPerTick = 10_000;

function processTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) start at field 3, the state.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

function machineBusyTicks(): number {
  const [cpu] = readFileSync("/proc/stat", "utf8").split("\n");
  // user nice system idle iowait irq softirq (steal: time the host gave to others, not ours)
  const [, user, nice, system, , , irq, softirq] = (cpu ?? "").trim().split(/\s+/).map(Number);
  return [user, nice, system, irq, softirq].reduce<number>((sum, t) => sum + (t ?? 0), 0);
}

/** The local Cassandra and Redis processes, when they run on this machine (else omitted). */
export function findStorePids(): Record<string, number> {
  const found: Record<string, number> = {};
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let command: string;
    try {
      command = readFileSync(`/proc/${entry}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (command.includes("org.apache.cassandra.service.CassandraDaemon")) {
      found.cassandra = Number(entry);
    } else if (command.startsWith("redis-server")) found.redis = Number(entry);
  }
  return found;
}

/** Starts counting; the returned function says what was spent since. */
export function startCpuMeter(pids: Readonly<Record<string, number>>): () => CpuSpent {
  const started = performance.now();
  const machineAtStart = machineBusyTicks();
  const atStart = Object.entries(pids).map(
    ([role, pid]) => [role, pid, processTicks(pid)] as const,
  );
  return () => {
    const byProcess: Record<string, number> = {};
    for (const [role, pid, ticks] of atStart) {
      const now = processTicks(pid);
      if (ticks !== undefined && now !== undefined) byProcess[role] = (now - ticks) * microsPerTick;
    }
    return {
      byProcess,
      machine: (machineBusyTicks() - machineAtStart) * microsPerTick,
      wallMs: performance.now() - started,
    };
  };
}

/** CPU microseconds per unit of work (receipts, calls), by process, rounded. */
export function perUnit(spent: CpuSpent, units: number): Record<string, number> {
  const per: Record<string, number> = {};
  for (const [role, micros] of Object.entries(spent.byProcess)) {
    per[role] = Math.round(micros / units);
  }
  per.machine = Math.round(spent.machine / units);
  return per;
}
