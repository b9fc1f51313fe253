// CPU time and memory of a running process, from /proc (Linux): what a proxy
// costs per transaction is as telling as its throughput on a 2-core machine.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ProcStat {
  /** user + system CPU time consumed so far, in ms. */
  cpuMs: number;
  /** Resident set size now (VmRSS), bytes. */
  rssBytes: number;
  /** Peak resident set size (VmHWM), bytes. */
  peakRssBytes: number;
}

const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux ABI Node supports

/** Clock ticks of CPU a process used (utime + stime). Throws once the process is gone. */
function cpuTicks(pid: number): number {
  const rest = statFields(pid);
  return Number(rest[11]) + Number(rest[12]);
}

/** /proc/<pid>/stat from field 3 (state) on: the command name before it is parenthesised and may contain spaces. */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * CPU ticks and minor page faults of a process plus those of its waited-for
 * children (utime + stime + cutime + cstime, minflt + cminflt), from one read.
 */
function ticksAndFaults(pid: number): { ticks: number; faults: number } {
  const rest = statFields(pid);
  return { ticks: Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]), faults: Number(rest[7]) + Number(rest[8]) };
}

/** Reads /proc/<pid>/stat and status; undefined once the process is gone (or off Linux). */
export function procStat(pid: number): ProcStat | undefined {
  try {
    const ticks = cpuTicks(pid);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { cpuMs: (ticks * 1000) / TICKS_PER_SECOND, rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

function childrenOf(pid: number): number[] {
  try {
    const out: number[] = [];
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const list = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (list) out.push(...list.split(/\s+/).map(Number));
    }
    return out;
  } catch {
    return [];
  }
}

/** procStat summed over a process and all its descendants (a proxy with worker processes). */
export function procTreeStat(pid: number): ProcStat | undefined {
  const root = procStat(pid);
  if (!root) return undefined;
  const total = { ...root };
  for (const child of childrenOf(pid)) {
    const s = procTreeStat(child);
    if (!s) continue;
    total.cpuMs += s.cpuMs;
    total.rssBytes += s.rssBytes;
    total.peakRssBytes += s.peakRssBytes;
  }
  return total;
}

/** The backends of a finished pgbench run exit just after it: wait this long before reading the cluster's CPU time. */
export const settleBackends = (): Promise<void> => new Promise((r) => setTimeout(r, 300));

/**
 * A reader of the CPU time (ms) a Postgres cluster has used so far, and of its
 * minor page faults: the postmaster and its live children, plus what its exited children used (a
 * pgbench run's backends end with the run, and the postmaster reaps them).
 * Read it only once those backends are gone (a few hundred ms after pgbench
 * exits), or their time is missing. Undefined once the postmaster is gone.
 */
export function postgresClusterCpu(dataDir: string): () => { cpuMs: number; minorFaults: number } | undefined {
  const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const orZero = (p: number): { ticks: number; faults: number } => {
    try {
      return ticksAndFaults(p);
    } catch {
      return { ticks: 0, faults: 0 }; // a backend that ended between listing and reading (why callers wait for the run's backends to exit)
    }
  };
  return () => {
    try {
      const total = ticksAndFaults(pid);
      for (const child of childrenOf(pid)) {
        const c = orZero(child);
        total.ticks += c.ticks;
        total.faults += c.faults;
      }
      return { cpuMs: (total.ticks * 1000) / TICKS_PER_SECOND, minorFaults: total.faults };
    } catch {
      return undefined;
    }
  };
}
