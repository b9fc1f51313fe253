// The measuring loop of the benchmarks that compare pgcmek with Postgres direct
// (bench:encryption, bench:searchable). Every cell (a workload, a query mode)
// runs against every target with pgbench: a warm-up, then --rounds rounds with
// the target order rotated per cell, so drift on a shared machine hits every
// target alike. Besides throughput and latency it measures the CPU time per
// operation of pgcmek and of the whole Postgres cluster: on a 2-core machine a
// costlier operation at the database lowers the rate as much as one in the proxy.
import { concat, runPgbench, runPgbenchMeasured, summaryUsToMs, type PgTarget, type QueryMode } from './pgbench.js';
import { fmt, type Unit } from './report.js';
import { summarize, type Summary } from './stats.js';
import { settleBackends } from './procstat.js';

export interface CellTarget {
  readonly name: string;
  readonly conn: PgTarget;
  /** pgcmek's CPU so far, when the target goes through it. */
  readonly stat?: (() => { cpuMs: number } | undefined) | undefined;
}

export interface CellsOptions<C extends string, T extends CellTarget> {
  cells: readonly C[];
  targets: readonly T[];
  rounds: number;
  seconds: number;
  /**
   * Seconds each measured run first spends warming its fresh connections up
   * (unmeasured, same connections; see pgbench.ts); 0 measures from the start.
   */
  warmUp: number;
  /** The pgbench binary; each run is `pgbench -n -c clients -j 2 -T seconds -l -M mode …args`. */
  pgbench: string;
  clients: number;
  /** What a cell runs against a target: the query mode, and its script (`-f`, `-D`). */
  pgbenchArgs(cell: C, target: T): { mode: QueryMode; args: string[] };
  /** Before each measured run, e.g. emptying the tables an insert fills. */
  prepare?(cell: C, target: T): Promise<void>;
  /** The Postgres cluster's CPU and minor page faults so far (postgresClusterCpu). */
  postgresCpu(): { cpuMs: number; minorFaults?: number } | undefined;
  /** What one operation is called (progress lines say `… ${unit.many}/s`). */
  unit: Unit;
  /** Width of the cell's name in progress lines. */
  cellWidth: number;
  say(line: string): void;
}

export interface CellResult<C extends string, N extends string> {
  cell: C;
  target: N;
  /** pgbench's tps, the mean over rounds. */
  perSec: number;
  rounds: number[];
  ops: number;
  /** Over every transaction of every round. */
  latencyMs: Summary;
  proxyCpuUsPerOp?: number;
  postgresCpuUsPerOp?: number;
  /**
   * The cluster's minor page faults per operation: a fresh backend faults in
   * each 4 KiB page of shared memory it touches for the first time.
   */
  postgresFaultsPerOp?: number;
}

const WARM_UP_SECONDS = 2;

type Cpu = { cpuMs: number; minorFaults?: number } | undefined;
/** CPU ms (and faults) and the operations they were spent on, summed over the rounds whose both readings exist. */
class CpuPerOp {
  private ms = 0;
  private faults = 0;
  private ops = 0;
  add(before: Cpu, after: Cpu, ops: number): void {
    if (!before || !after) return;
    this.ms += after.cpuMs - before.cpuMs;
    this.faults += (after.minorFaults ?? NaN) - (before.minorFaults ?? NaN);
    this.ops += ops;
  }
  us(): number | undefined {
    return this.ops > 0 ? (this.ms * 1000) / this.ops : undefined;
  }
  faultsPerOp(): number | undefined {
    return this.ops > 0 && Number.isFinite(this.faults) ? this.faults / this.ops : undefined;
  }
}

/** Runs every cell against every target; results in cells × targets order. */
export async function runCells<C extends string, T extends CellTarget>(o: CellsOptions<C, T>): Promise<CellResult<C, T['name']>[]> {
  const options = (cell: C, t: T, seconds: number) => {
    const { mode, args } = o.pgbenchArgs(cell, t);
    return { mode, clients: o.clients, threads: 2, seconds, selectOnly: false, latencies: true, extraArgs: ['-n', ...args] };
  };
  // Warm-up (not measured): JITs the proxy's paths, caches the DEK, fills shared_buffers.
  for (const cell of o.cells) {
    for (const t of o.targets) {
      const r = await runPgbench(o.pgbench, t.conn, options(cell, t, WARM_UP_SECONDS));
      if (!r.ok) throw new Error(`warm-up ${cell} against ${t.name} failed: ${r.stderr.slice(-2000)}`);
    }
  }

  const acc = o.cells.map(() => o.targets.map(() => ({ tps: [] as number[], ops: 0, samples: [] as Float64Array[], proxy: new CpuPerOp(), pg: new CpuPerOp() })));
  let turn = 0;
  for (let round = 1; round <= o.rounds; round++) {
    for (const [ci, cell] of o.cells.entries()) {
      const order = o.targets.map((_, i) => (i + turn) % o.targets.length);
      turn++;
      for (const ti of order) {
        const t = o.targets[ti]!;
        await o.prepare?.(cell, t);
        await settleBackends();
        const m = await runPgbenchMeasured(o.pgbench, t.conn, options(cell, t, o.seconds), o.warmUp, [() => t.stat?.(), o.postgresCpu]);
        const r = m.result;
        const [before, pgBefore] = m.before;
        const [after, pgAfter] = m.after;
        if (!r.ok) throw new Error(`${cell} against ${t.name} failed (exit ${r.exit}): ${r.stderr.slice(-2000)}`);
        const a = acc[ci]![ti]!;
        a.tps.push(r.tps);
        a.ops += r.transactions;
        if (r.samplesUs) a.samples.push(r.samplesUs);
        a.proxy.add(before, after, r.transactions);
        a.pg.add(pgBefore, pgAfter, r.transactions);
        o.say(
          `round ${round}/${o.rounds}  ${cell.padEnd(o.cellWidth)}  ${t.name.padEnd(20)}  ${fmt(r.tps)} ${o.unit.many}/s  p50 ${fmt(r.latencyMs?.p50, 3)} ms  p99 ${fmt(r.latencyMs?.p99, 3)} ms`,
        );
      }
    }
  }

  return o.cells.flatMap((cell, ci) =>
    o.targets.map((t, ti) => {
      const a = acc[ci]![ti]!;
      const proxy = a.proxy.us();
      const pg = a.pg.us();
      const faults = a.pg.faultsPerOp();
      return {
        cell,
        target: t.name,
        perSec: a.tps.reduce((x, y) => x + y, 0) / a.tps.length,
        rounds: a.tps,
        ops: a.ops,
        latencyMs: summaryUsToMs(summarize(concat(a.samples))),
        ...(proxy !== undefined && { proxyCpuUsPerOp: proxy }),
        ...(pg !== undefined && { postgresCpuUsPerOp: pg }),
        ...(faults !== undefined && { postgresFaultsPerOp: faults }),
      };
    }),
  );
}
