// Runs pgbench against a target and reads back throughput and per-transaction
// latencies. Latency percentiles come from pgbench's per-transaction log (-l):
// its third column is each transaction's elapsed time in microseconds, so p50/p99
// are exact over every transaction, not estimated from --progress averages.
//
// With `warmUp`, the same connections run unmeasured first and only a window
// after it counts: the transactions the log says completed inside it. A fresh
// backend faults in every shared-buffer page it touches for the first time
// (Linux does not copy a shared mapping's page tables on fork), which on the
// VMs here costs tens of µs a fault: `pgbench -S` on fresh connections takes
// several seconds to reach its steady rate, and a short run measured from its
// start counts that warm-up as the proxy's cost (PgBouncer keeps its server
// connections between runs, so its backends are warm already).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec, type ExecResult } from './proc.js';
import { settleBackends } from './procstat.js';
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
  /**
   * Run `seconds` of warm-up on the same connections first; the result covers
   * only the `seconds` after it. The hooks run at the window's edges (read CPU
   * counters there), both while pgbench still runs. Needs `seconds`.
   */
  warmUp?: { seconds: number; onStart?(): void; onEnd?(): void };
}

/** The measured window lies this far inside the pgbench run's end (the end hook runs while backends are alive). */
const WINDOW_TAIL_SECONDS = 1;

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
  const warm = o.warmUp;
  if (warm && o.seconds === undefined) throw new Error('runPgbench: warmUp needs seconds');
  const wantLat = o.latencies ?? true;
  // A window is counted from the log, so it is written then too.
  const logDir = wantLat || warm ? mkdtempSync(join(tmpdir(), 'pgbench-log-')) : undefined;
  const runSeconds = warm ? warm.seconds + o.seconds! + WINDOW_TAIL_SECONDS : o.seconds;
  const args = [
    ...((o.selectOnly ?? true) ? ['-S'] : []),
    '-M', o.mode,
    '-c', String(o.clients),
    '-j', String(o.threads ?? Math.min(o.clients, 2)),
    ...(runSeconds !== undefined ? ['-T', String(runSeconds)] : ['-t', String(o.transactions)]),
    ...(logDir ? ['-l', `--log-prefix=${join(logDir, 'tx')}`] : []),
    ...(o.extraArgs ?? []),
    ...conn(target),
    target.database,
  ];
  const timeoutMs = o.timeoutMs ?? (runSeconds !== undefined ? runSeconds * 1000 + 60_000 : 600_000);
  // Window edges, in ms since the epoch (pgbench logs completion times against the same clock).
  let from = 0;
  let to = 0;
  const timers: NodeJS.Timeout[] = [];
  if (warm) {
    timers.push(
      setTimeout(() => {
        from = Date.now();
        warm.onStart?.();
      }, warm.seconds * 1000),
      setTimeout(() => {
        to = Date.now();
        warm.onEnd?.();
      }, (warm.seconds + o.seconds!) * 1000),
    );
  }
  try {
    const r = await exec(bin, args, { env: env(target), timeoutMs });
    const parsed = parsePgbenchOutput(r.stdout);
    const result: PgbenchResult = { ...parsed, ok: r.code === 0 && parsed.failed === 0 && parsed.transactions > 0, exit: r.code, stdout: r.stdout, stderr: r.stderr };
    if (warm) {
      const w = readPgbenchLogWindow(logDir!, from * 1000, to * 1000);
      // A window the run did not reach (pgbench ended early) measures nothing.
      const reached = from > 0 && to > from;
      result.transactions = reached ? w.length : 0;
      result.tps = reached ? w.length / ((to - from) / 1000) : Number.NaN;
      result.ok &&= reached && w.length > 0;
      if (wantLat) {
        result.samplesUs = w;
        result.latencyMs = summaryUsToMs(summarize(w));
      }
    } else if (logDir) {
      const samples = readPgbenchLogs(logDir);
      result.samplesUs = samples;
      result.latencyMs = summaryUsToMs(summarize(samples));
    }
    return result;
  } finally {
    for (const t of timers) clearTimeout(t);
    if (logDir) rmSync(logDir, { recursive: true, force: true });
  }
}

type Reading = { cpuMs: number } | undefined;

/**
 * runPgbench with CPU counters read at the edges of what it measures: with a
 * warm-up, after it and before the run ends (backends still alive); without,
 * around the whole run (after its backends have exited, so their time counts).
 * `readers` are e.g. the proxy's and the Postgres cluster's CPU.
 */
export async function runPgbenchMeasured(
  bin: string,
  target: PgTarget,
  o: Omit<PgbenchOptions, 'warmUp'>,
  warmUpSeconds: number,
  readers: ReadonlyArray<() => Reading>,
): Promise<{ result: PgbenchResult; before: Reading[]; after: Reading[] }> {
  let before: Reading[] = [];
  let after: Reading[] = [];
  const read = (): Reading[] => readers.map((f) => f());
  if (warmUpSeconds > 0) {
    const result = await runPgbench(bin, target, { ...o, warmUp: { seconds: warmUpSeconds, onStart: () => (before = read()), onEnd: () => (after = read()) } });
    return { result, before, after };
  }
  before = read();
  const result = await runPgbench(bin, target, o);
  await settleBackends();
  after = read();
  return { result, before, after };
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

/** Elapsed µs of the logged transactions that completed in [fromUs, toUs) (µs since the epoch), over every log file in dir. */
export function readPgbenchLogWindow(dir: string, fromUs: number, toUs: number): Float64Array {
  const parts: Float64Array[] = [];
  for (const f of readdirSync(dir)) parts.push(parsePgbenchLogWindow(readFileSync(join(dir, f), 'latin1'), fromUs, toUs));
  return concat(parts);
}

/**
 * Elapsed µs (third field) of the lines whose completion time (fields five and
 * six: epoch seconds, µs) is in [fromUs, toUs). Failed or skipped transactions
 * (a word in the third field) are left out, as parsePgbenchLog does.
 */
export function parsePgbenchLogWindow(text: string, fromUs: number, toUs: number): Float64Array {
  const out = new Float64Array(countLines(text));
  let n = 0;
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 6) continue;
    const elapsed = Number(f[2]);
    const done = Number(f[4]) * 1e6 + Number(f[5]);
    if (Number.isFinite(elapsed) && done >= fromUs && done < toUs) out[n++] = elapsed;
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
