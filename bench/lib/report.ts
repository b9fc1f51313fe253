// Output of the comparison benchmarks (bench:encryption, bench:searchable): the
// report as JSON (--json) or as a table, a row per cell and target, then the
// headline ratio (encrypted over plaintext through pgcmek) per cell.
import { cpus } from 'node:os';
import type { CellResult } from './cells.js';
import { medianPairedRatio, ratio } from './stats.js';

/** What one operation is called: in progress lines (`ops/s`) and JSON names (`opsPerSec`, `proxyCpuUsPerOp`). */
export interface Unit {
  many: string;
  one: string;
}

export const fmt = (n: number | undefined, digits = 0): string => (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits));

/** The result of one cell against one target (runCells returns every pair). */
export function cellResult<C extends string, N extends string>(cells: CellResult<C, N>[], cell: C, target: N): CellResult<C, N> {
  const r = cells.find((c) => c.cell === cell && c.target === target);
  if (!r) throw new Error(`no result for ${cell} against ${target}`);
  return r;
}

/** The headline ratio of a cell: encrypted over plaintext, both through pgcmek, against the issue's target. */
export interface TargetRatio {
  /** Of the mean rates over rounds. */
  encryptedOverPlaintextViaPgcmek: number;
  /** The median of the per-round ratios (the two targets run back to back in a round). */
  medianRoundRatio: number;
  perRound: number[];
  target: number;
  meetsTarget: boolean;
  /** The median of the per-round ratios meets it. */
  medianMeetsTarget: boolean;
}

/**
 * A cell's targets `encrypted via pgcmek` and `plaintext via pgcmek`, and its
 * headline for the JSON report: their TargetRatio and CPU µs per operation of
 * pgcmek and of Postgres for each (`proxyCpuUsPerOpEncrypted`, …; named by unit).
 */
export function headlineRatio<C extends string>(cells: CellResult<C, string>[], cell: C, target: number, unit: Unit) {
  const encrypted = cellResult(cells, cell, 'encrypted via pgcmek');
  const plaintext = cellResult(cells, cell, 'plaintext via pgcmek');
  const r = ratio(encrypted.perSec, plaintext.perSec);
  const m = medianPairedRatio(encrypted.rounds, plaintext.rounds);
  const headline: TargetRatio & Record<string, number | number[] | boolean | undefined> = {
    encryptedOverPlaintextViaPgcmek: r,
    medianRoundRatio: m,
    perRound: encrypted.rounds.map((e, i) => ratio(e, plaintext.rounds[i]!)),
    target,
    meetsTarget: r >= target,
    medianMeetsTarget: m >= target,
    [`proxyCpuUsPer${unit.one}Encrypted`]: encrypted.proxyCpuUsPerOp,
    [`proxyCpuUsPer${unit.one}Plaintext`]: plaintext.proxyCpuUsPerOp,
    [`postgresCpuUsPer${unit.one}Encrypted`]: encrypted.postgresCpuUsPerOp,
    [`postgresCpuUsPer${unit.one}Plaintext`]: plaintext.postgresCpuUsPerOp,
  };
  return { encrypted, plaintext, headline };
}

export interface TableOptions {
  clients: number;
  seconds: number;
  /** Warm-up seconds before each measured window (0: measured from connect). */
  warmUp: number;
  rounds: number;
  /** Said in the first line after the run's settings (rows, distribution), or ''. */
  about: string;
  /** How Postgres' shared memory is paged (HugePages.describe). */
  pages: string;
  /** The Node version pgcmek runs on. */
  node: string;
  /** The cell column's title (`workload`, `mode`) and width. */
  cellTitle: string;
  cellWidth: number;
  unit: Unit;
  cells: CellResult<string, string>[];
  /** A line per cell: its TargetRatio, then `more` (the script's other ratios). */
  ratios: { cell: string; ratio: TargetRatio; more: string }[];
}

/** The text report: settings, a row per cell and target, then a ratio line per cell. */
export function resultTable(o: TableOptions): string[] {
  const rateTitle = `${o.unit.many}/s (mean)`;
  const cpuTitle = `CPU µs/${o.unit.one.toLowerCase()}: pgcmek`;
  const lines = [
    `pgbench -c ${o.clients} -j 2, ${o.seconds}s${o.warmUp ? ` after ${o.warmUp}s of warm-up on the same connections` : ' from connect'} x ${o.rounds} round(s) per cell, ${o.about ? o.about + ', ' : ''}Postgres 18 (${o.pages}), ${cpus().length} CPUs, pgcmek on Node ${o.node}`,
    `${o.cellTitle.padEnd(o.cellWidth)}  ${'target'.padEnd(22)}  ${rateTitle}  ${'rounds'.padEnd(24)}  ${'p50 ms'.padStart(7)}  ${'p99 ms'.padStart(7)}   ${cpuTitle}  postgres  faults`,
  ];
  for (const r of o.cells) {
    lines.push(
      `${r.cell.padEnd(o.cellWidth)}  ${r.target.padEnd(22)}  ${fmt(r.perSec).padStart(rateTitle.length)}  ${r.rounds.map((x) => fmt(x)).join('/').padEnd(24)}` +
        `  ${fmt(r.latencyMs.p50, 3).padStart(7)}  ${fmt(r.latencyMs.p99, 3).padStart(7)}   ${fmt(r.proxyCpuUsPerOp, 1).padStart(cpuTitle.length)}  ${fmt(r.postgresCpuUsPerOp, 1).padStart(8)}  ${fmt(r.postgresFaultsPerOp, 2).padStart(6)}`,
    );
  }
  lines.push('');
  for (const { cell, ratio: r, more } of o.ratios) {
    lines.push(
      `${cell.padEnd(o.cellWidth)}  encrypted/plaintext via pgcmek ${fmt(r.encryptedOverPlaintextViaPgcmek, 2)} (target ≥ ${r.target}: ${r.meetsTarget ? 'met' : 'NOT met'}; ` +
        `per round ${r.perRound.map((x) => fmt(x, 2)).join('/')}, median ${fmt(r.medianRoundRatio, 2)}: ${r.medianMeetsTarget ? 'met' : 'NOT met'})${more}`,
    );
  }
  return lines;
}

/**
 * Results under a benchmark's own JSON names: cellKey for the cell (`workload`,
 * `mode`), the unit in the rate and CPU names (`lookupsPerSec`, `proxyCpuUsPerLookup`).
 */
export function resultsJson(cells: CellResult<string, string>[], cellKey: string, unit: Unit): Record<string, unknown>[] {
  return cells.map((c) => ({
    [cellKey]: c.cell,
    target: c.target,
    [`${unit.many}PerSec`]: c.perSec,
    rounds: c.rounds,
    ops: c.ops,
    latencyMs: c.latencyMs,
    ...(c.proxyCpuUsPerOp !== undefined && { [`proxyCpuUsPer${unit.one}`]: c.proxyCpuUsPerOp }),
    ...(c.postgresCpuUsPerOp !== undefined && { [`postgresCpuUsPer${unit.one}`]: c.postgresCpuUsPerOp }),
    ...(c.postgresFaultsPerOp !== undefined && { [`postgresMinorFaultsPer${unit.one}`]: c.postgresFaultsPerOp }),
  }));
}

/** The report on stdout: as JSON, or as the table's lines (after a blank line). */
export function printReport(json: boolean, report: object, table: () => string[]): void {
  process.stdout.write(json ? JSON.stringify(report, null, 2) + '\n' : ['', ...table()].join('\n') + '\n');
}
