// `npm run bench:profile`: where a transaction's CPU goes, machine-wide, for
// `pgbench -S` direct, through PgBouncer and through pgcmek (bench:proxy's
// setup, one run per target). It answers bench:proxy's "where does the rest
// go?" with a measurement anyone can repeat.
//
// `perf record -a` samples every CPU at --frequency Hz (cpu-clock) while one
// pgbench run goes on; with --warm-up (default 5 s), only the samples and
// transactions of the window after it count (fresh backends warm up first:
// bench/lib/pgbench.ts). Samples are grouped by process (the Postgres cluster,
// the proxy, pgbench, the rest of the machine, idle) and by kernel or user
// space, and turned into CPU µs per transaction (samples ÷ Hz ÷ transactions).
// Then the symbols behind the gap: Postgres' own functions behind pgcmek
// against behind PgBouncer (the same server doing the same queries), and
// pgcmek's top symbols (JIT frames are named: pgcmek runs with --perf-basic-prof).
//
// Needs `perf` (Debian's linux-perf; installed when missing and run as root)
// and permission to sample the whole machine (root, or kernel.perf_event_paranoid ≤ 0).
//
//   node dist/bench/profile.js [--seconds N (6)] [--warm-up N (5)] [--mode prepared|simple|extended (prepared)]
//                              [--clients N (16)] [--frequency HZ (999)] [--top N (15)] [--json] [--huge-pages on|off]
import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, startCluster } from '../src/dev/cluster.js';
import { nonNegativeInt, positiveInt, onOff } from './lib/args.js';
import { reserveHugePages } from './lib/huge-pages.js';
import { findOrInstall } from './lib/debian.js';
import { pgbenchInit, runPgbench, type PgTarget, type QueryMode } from './lib/pgbench.js';
import { findPgBouncer, startPgBouncer } from './lib/pgbouncer.js';
import { startPgcmek } from './lib/pgcmek.js';
import { onCleanup, runMain, start, tempDir } from './lib/proc.js';
import { settleBackends } from './lib/procstat.js';

type Group = 'postgres' | 'proxy' | 'pgbench' | 'other' | 'idle';
const GROUPS: Group[] = ['postgres', 'proxy', 'pgbench', 'other', 'idle'];

interface Profile {
  target: string;
  tps: number;
  transactions: number;
  /** CPU µs per transaction, per group, split kernel/user. */
  groups: Record<Group, { user: number; kernel: number }>;
  /** µs per transaction by "dso symbol", for Postgres and for the proxy. */
  postgresSymbols: Map<string, number>;
  proxySymbols: Map<string, number>;
}

function options() {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '6' },
      'warm-up': { type: 'string', default: '5' },
      mode: { type: 'string', default: 'prepared' },
      clients: { type: 'string', default: '16' },
      frequency: { type: 'string', default: '999' },
      top: { type: 'string', default: '15' },
      json: { type: 'boolean', default: false },
      'huge-pages': { type: 'string', default: 'on' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write('usage: node dist/bench/profile.js [--seconds N (6)] [--warm-up N (5)] [--mode prepared|simple|extended (prepared)] [--clients N (16)] [--frequency HZ (999)] [--top N (15)] [--json] [--huge-pages on|off (on)]\n');
    process.exit(0);
  }
  if (!['prepared', 'simple', 'extended'].includes(values.mode)) throw new Error('--mode must be prepared, simple or extended');
  return {
    seconds: positiveInt(values.seconds, 'seconds'),
    warmUp: nonNegativeInt(values['warm-up'], 'warm-up'),
    mode: values.mode as QueryMode,
    clients: positiveInt(values.clients, 'clients'),
    frequency: positiveInt(values.frequency, 'frequency'),
    top: positiveInt(values.top, 'top'),
    json: values.json,
    hugePages: onOff(values['huge-pages'], 'huge-pages'),
  };
}

interface Row {
  tid: number;
  comm: string;
  /** "dso symbol", e.g. "postgres _bt_compare" or "[kernel.kallsyms] tcp_sendmsg". */
  where: string;
  kernel: boolean;
  samples: number;
}

/**
 * Every (thread, dso, symbol) of one data file with its sample count. Sorted
 * by thread first: perf applies --comm/--pid filters to merged entries, so a
 * report sorted by dso alone would credit the kernel's samples to one process.
 */
function rows(perf: string, file: string, window: string[]): Row[] {
  const SEP = '\x1f';
  const out = execFileSync(perf, ['report', '-i', file, '--stdio', '--no-children', '--sort', 'pid,dso,sym', '-F', 'sample,pid,dso,sym', '-t', SEP, ...window], {
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const list: Row[] = [];
  for (const line of out.split('\n')) {
    if (line.startsWith('#')) continue;
    const f = line.split(SEP).map((x) => x.trim());
    if (f.length < 4 || !/^\d+$/.test(f[0]!)) continue;
    const m = /^(-?\d+):(.*)$/.exec(f[1]!);
    if (!m) continue;
    const dso = f[2]!;
    const sym = f.slice(3).join(' ').replace(/^\[[k.]\]\s*/, '');
    list.push({ tid: Number(m[1]), comm: m[2]!, where: `${dso} ${sym}`, kernel: dso === '[kernel.kallsyms]', samples: Number(f[0]) });
  }
  return list;
}

/** The thread ids of a live process (its main thread and Node's helper threads). */
function threadsOf(pid: number): Set<number> {
  try {
    return new Set(readdirSync(`/proc/${pid}/task`).map(Number));
  } catch {
    return new Set([pid]);
  }
}

function groupOf(r: Row, proxy: Set<number>): Group {
  if (proxy.has(r.tid)) return 'proxy';
  if (r.comm === 'postgres') return 'postgres';
  if (r.comm === 'pgbench') return 'pgbench';
  if (r.tid === 0) return 'idle';
  return 'other';
}

function analyse(perf: string, file: string, window: string[], target: string, proxyPid: number | undefined, tps: number, transactions: number, hz: number): Profile {
  const us = (samples: number): number => (samples * 1e6) / hz / transactions;
  const proxy = proxyPid === undefined ? new Set<number>() : threadsOf(proxyPid);
  const groups = Object.fromEntries(GROUPS.map((g) => [g, { user: 0, kernel: 0 }])) as Profile['groups'];
  const postgresSymbols = new Map<string, number>();
  const proxySymbols = new Map<string, number>();
  for (const r of rows(perf, file, window)) {
    const g = groupOf(r, proxy);
    const t = us(r.samples);
    groups[g][r.kernel ? 'kernel' : 'user'] += t;
    const by = g === 'postgres' ? postgresSymbols : g === 'proxy' ? proxySymbols : undefined;
    if (by) by.set(r.where, (by.get(r.where) ?? 0) + t);
  }
  return { target, tps, transactions, groups, postgresSymbols, proxySymbols };
}

const f1 = (n: number): string => n.toFixed(1);

function table(profiles: Profile[], o: ReturnType<typeof options>, pages: string): string {
  const lines: string[] = [];
  const w = 12;
  lines.push(`pgbench -S -M ${o.mode}, ${o.clients} clients, ${o.seconds} s per target${o.warmUp ? ` after ${o.warmUp} s of warm-up on the same connections` : ''}, perf -a at ${o.frequency} Hz, Postgres 18 (${pages}), ${cpus().length} CPUs, Node ${process.version}, 1-min load ${loadavg()[0]!.toFixed(1)}`);
  lines.push('CPU µs per transaction'.padEnd(26) + profiles.map((p) => p.target.padStart(w)).join(''));
  for (const g of GROUPS) {
    for (const side of ['user', 'kernel'] as const) {
      if (g === 'idle' && side === 'user') continue;
      lines.push(`  ${g.padEnd(9)} ${side.padEnd(14)}` + profiles.map((p) => f1(p.groups[g][side]).padStart(w)).join(''));
    }
  }
  const busy = (p: Profile): number => GROUPS.filter((g) => g !== 'idle').reduce((s, g) => s + p.groups[g].user + p.groups[g].kernel, 0);
  lines.push('  all but idle'.padEnd(26) + profiles.map((p) => f1(busy(p)).padStart(w)).join(''));
  lines.push('  tps'.padEnd(26) + profiles.map((p) => p.tps.toFixed(0).padStart(w)).join(''));

  const bouncer = profiles.find((p) => p.target === 'pgbouncer');
  const pgcmek = profiles.find((p) => p.target === 'pgcmek')!;
  if (bouncer) {
    const keys = new Set([...bouncer.postgresSymbols.keys(), ...pgcmek.postgresSymbols.keys()]);
    const diff = [...keys].map((k) => ({ k, a: bouncer.postgresSymbols.get(k) ?? 0, b: pgcmek.postgresSymbols.get(k) ?? 0 }));
    diff.sort((x, y) => Math.abs(y.b - y.a) - Math.abs(x.b - x.a));
    lines.push('', `Postgres behind PgBouncer vs behind pgcmek, µs per transaction (largest differences):`);
    for (const d of diff.slice(0, o.top)) lines.push(`  ${f1(d.a).padStart(6)} ${f1(d.b).padStart(6)} ${(d.b - d.a >= 0 ? '+' : '') + f1(d.b - d.a)}`.padEnd(30) + d.k.slice(0, 100));
  }
  const top = [...pgcmek.proxySymbols].sort((x, y) => y[1] - x[1]).slice(0, o.top);
  lines.push('', 'pgcmek, µs per transaction (top symbols):');
  for (const [k, v] of top) lines.push(`  ${f1(v).padStart(6)}  ${k.slice(0, 110)}`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const o = options();
  const say = (s: string): void => void process.stderr.write(s + '\n');
  const perf = findOrInstall('perf', 'linux-perf', { install: true, log: say });
  if (!perf) throw new Error('perf not found and could not be installed: apt-get install -y linux-perf');

  const hugePages = reserveHugePages(256 + 64, o.hugePages, say);
  const cluster = await startCluster({ flavour: '18', settings: { max_connections: 200, shared_buffers: "'256MB'", huge_pages: hugePages.setting } });
  onCleanup(() => cluster.stop());
  const pgbench = join(cluster.clientBin, 'pgbench');
  const conn = (port: number): PgTarget => ({ host: '127.0.0.1', port, user: cluster.user, password: cluster.password, database: 'postgres' });
  say(`postgres 18 on port ${cluster.port}; pgbench -i -s 10...`);
  await pgbenchInit(pgbench, conn(cluster.port), 10);

  const targets: { name: string; conn: PgTarget; pid?: number }[] = [{ name: 'direct', conn: conn(cluster.port) }];
  const bin = findPgBouncer({ install: true, log: say });
  if (bin) {
    const b = await startPgBouncer(bin, { upstream: cluster, adminUrl: cluster.url(), user: cluster.user, password: cluster.password, port: await freePort() });
    onCleanup(() => b.stop());
    targets.push({ name: 'pgbouncer', conn: conn(b.port), pid: b.proc.pid });
  } else {
    say('pgbouncer not found and could not be installed: profiled without it');
  }
  const p = await startPgcmek({ upstream: cluster, port: await freePort(), user: cluster.user, password: cluster.password, nodeArgs: ['--perf-basic-prof'] });
  onCleanup(() => rmSync(`/tmp/perf-${p.pid}.map`, { force: true }));
  onCleanup(() => p.stop());
  targets.push({ name: 'pgcmek', conn: conn(p.port), pid: p.pid });

  const dir = tempDir('pgcmek-bench-profile-');
  const run = (t: (typeof targets)[number], seconds: number) =>
    runPgbench(pgbench, t.conn, { mode: o.mode, clients: o.clients, threads: Math.min(o.clients, 2), seconds, latencies: false });
  const profiles: Profile[] = [];
  for (const t of targets) {
    const warm = await run(t, 2); // JITs the proxy, fills shared_buffers
    if (!warm.ok) throw new Error(`warm-up against ${t.name} failed: ${warm.stderr.slice(-2000)}`);
    await settleBackends();
    const file = join(dir, `${t.name}.data`);
    // Samples carry CLOCK_MONOTONIC times (-k), the clock of process.hrtime: with a
    // warm-up, only those inside pgbench's measured window are counted.
    const rec = start('perf', perf, ['record', '-a', '-k', 'CLOCK_MONOTONIC', '-F', String(o.frequency), '-o', file]);
    await new Promise((r) => setTimeout(r, 500)); // perf is sampling before the first transaction
    const mono = (): string => {
      const ns = process.hrtime.bigint();
      return `${ns / 1_000_000_000n}.${String((ns % 1_000_000_000n) / 1000n).padStart(6, '0')}`;
    };
    let from = '';
    let to = '';
    const pgbenchOptions = { mode: o.mode, clients: o.clients, threads: Math.min(o.clients, 2), seconds: o.seconds, latencies: false };
    const r = await runPgbench(pgbench, t.conn, o.warmUp > 0 ? { ...pgbenchOptions, warmUp: { seconds: o.warmUp, onStart: () => (from = mono()), onEnd: () => (to = mono()) } } : pgbenchOptions);
    await rec.stop('SIGINT', 10_000);
    if (!r.ok) throw new Error(`pgbench against ${t.name} failed: ${r.stderr.slice(-2000)}`);
    say(`${t.name}: ${r.tps.toFixed(0)} tps, profiled`);
    profiles.push(analyse(perf, file, o.warmUp > 0 ? ['--time', `${from},${to}`] : [], t.name, t.pid, r.tps, r.transactions, o.frequency));
  }

  if (o.json) {
    const round = (m: Map<string, number>, n: number) => Object.fromEntries([...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => [k, Number(v.toFixed(2))]));
    const out = profiles.map((p) => ({ ...p, postgresSymbols: round(p.postgresSymbols, 50), proxySymbols: round(p.proxySymbols, 50) }));
    process.stdout.write(JSON.stringify({ benchmark: 'profile', machine: { cpus: cpus().length, node: process.version }, settings: { ...o, postgresPages: hugePages.describe }, profiles: out }, null, 2) + '\n');
  } else {
    process.stdout.write(table(profiles, o, hugePages.describe) + '\n');
  }
}

await runMain(main);
