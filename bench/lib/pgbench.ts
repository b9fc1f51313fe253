// Runs pgbench against a target and reads back throughput and per-transaction
// latencies. Latency percentiles come from pgbench's per-transaction log (-l):
// its third column is each transaction's elapsed time in microseconds, so p50/p99
// are exact over every transaction, not estimated from --progress averages.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec, type ExecResult } from './proc.js';
import { summarize, type Summary } from './stats.js';

export interface PgTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export type QueryMode = 'simple' | 'extended' | 'prepared';

export interface PgbenchOptions {
  mode: QueryMode;
  clients: number;
  /** pgbench -j; default min(clients, 2) (the machine's cores). */
  threads?: number;
  /** -T; exactly one of seconds/transactions. */
  seconds?: number;
  /** -t, per client. */
  transactions?: number;
  /** -S (select-only) when true; otherwise pgbench's default TPC-B-like script, or your own -f in extraArgs. Default true. */
  selectOnly?: boolean;
  /** Write the per-transaction log and compute latency percentiles. Default true. */
  latencies?: boolean;
  extraArgs?: string[];
  timeoutMs?: number;
}

export interface PgbenchResult {
  ok: boolean;
  exit: number | null;
  /** From "tps = N (without initial connection time)". */
  tps: number;
  transactions: number;
  failed: number;
  /** pgbench's own "latency average" (ms). */
  latencyAvgMs: number;
  /** From the per-transaction log, in milliseconds; undefined when latencies: false. */
  latencyMs?: Summary;
  /** Raw per-transaction latencies in µs (to merge rounds), when logged. */
  samplesUs?: Float64Array;
  stdout: string;
  stderr: string;
}

function env(t: PgTarget): NodeJS.ProcessEnv {
  // The password travels in the environment, never on a command line (ps shows those).
  return { ...process.env, PGPASSWORD: t.password, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' };
}

function conn(t: PgTarget): string[] {
  return ['-h', t.host, '-p', String(t.port), '-U', t.user];
}

/** `pgbench -i -s scale` (client-side data generation: COPY FROM STDIN). Throws with pgbench's output on failure. */
export async function pgbenchInit(bin: string, target: PgTarget, scale: number, extraArgs: string[] = []): Promise<ExecResult> {
  const r = await exec(bin, ['-i', '-s', String(scale), '-q', ...extraArgs, ...conn(target), target.database], { env: env(target), timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`pgbench -i failed (exit ${r.code}): ${r.stderr}${r.stdout}`);
  return r;
}

/** One pgbench run; never throws for a failed run (ok: false, see stderr). */
export async function runPgbench(bin: string, target: PgTarget, o: PgbenchOptions): Promise<PgbenchResult> {
  if ((o.seconds === undefined) === (o.transactions === undefined)) throw new Error('runPgbench: give exactly one of seconds / transactions');
  const wantLat = o.latencies ?? true;
  const logDir = wantLat ? mkdtempSync(join(tmpdir(), 'pgbench-log-')) : undefined;
  const args = [
    ...((o.selectOnly ?? true) ? ['-S'] : []),
    '-M', o.mode,
    '-c', String(o.clients),
    '-j', String(o.threads ?? Math.min(o.clients, 2)),
    ...(o.seconds !== undefined ? ['-T', String(o.seconds)] : ['-t', String(o.transactions)]),
    ...(logDir ? ['-l', `--log-prefix=${join(logDir, 'tx')}`] : []),
    ...(o.extraArgs ?? []),
    ...conn(target),
    target.database,
  ];
  const timeoutMs = o.timeoutMs ?? (o.seconds !== undefined ? o.seconds * 1000 + 60_000 : 600_000);
  try {
    const r = await exec(bin, args, { env: env(target), timeoutMs });
    const parsed = parsePgbenchOutput(r.stdout);
    const result: PgbenchResult = { ...parsed, ok: r.code === 0 && parsed.failed === 0 && parsed.transactions > 0, exit: r.code, stdout: r.stdout, stderr: r.stderr };
    if (logDir) {
      const samples = readPgbenchLogs(logDir);
      result.samplesUs = samples;
      result.latencyMs = summaryUsToMs(summarize(samples));
    }
    return result;
  } finally {
    if (logDir) rmSync(logDir, { recursive: true, force: true });
  }
}

/** The summary lines of pgbench 15's report. A missing tps/latency line reads as NaN, missing counts as 0. */
export function parsePgbenchOutput(stdout: string): { tps: number; transactions: number; failed: number; latencyAvgMs: number } {
  const num = (re: RegExp): number => {
    const m = re.exec(stdout);
    return m ? Number(m[1]) : Number.NaN;
  };
  const transactions = num(/^number of transactions actually processed: (\d+)/m);
  // pgbench < 15 prints no failure line (a client stopped at its first error, and the exit code says so).
  const failed = num(/^number of failed transactions: (\d+)/m);
  return {
    tps: num(/^tps = ([\d.]+) \(without initial connection time\)/m),
    transactions: Number.isNaN(transactions) ? 0 : transactions,
    failed: Number.isNaN(failed) ? 0 : failed,
    latencyAvgMs: num(/^latency average = ([\d.]+) ms/m),
  };
}

/** Elapsed µs (third column) of every line of every log file in dir. */
export function readPgbenchLogs(dir: string): Float64Array {
  const parts: Float64Array[] = [];
  for (const f of readdirSync(dir)) parts.push(parsePgbenchLog(readFileSync(join(dir, f), 'latin1')));
  return concat(parts);
}

/** Parses one per-transaction log: "client_id transaction_no time script_no time_epoch time_us [...]". */
export function parsePgbenchLog(text: string): Float64Array {
  const out = new Float64Array(countLines(text));
  let n = 0;
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    // Third space-separated field, without splitting the whole line (logs reach 10^6 lines).
    const s1 = text.indexOf(' ', pos);
    const s2 = s1 < 0 ? -1 : text.indexOf(' ', s1 + 1);
    const s3 = s2 < 0 ? -1 : text.indexOf(' ', s2 + 1);
    if (s3 > 0 && s3 < end) {
      const v = Number(text.slice(s2 + 1, s3));
      if (Number.isFinite(v)) out[n++] = v;
    }
    pos = end + 1;
  }
  return out.subarray(0, n);
}

function countLines(text: string): number {
  let n = 1;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

export function concat(parts: Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A summary of µs samples, in ms. */
export function summaryUsToMs(s: Summary): Summary {
  return { count: s.count, min: s.min / 1000, max: s.max / 1000, mean: s.mean / 1000, p50: s.p50 / 1000, p90: s.p90 / 1000, p99: s.p99 / 1000 };
}
