// `npm run bench:proxy`: what does putting pgcmek in the path cost, next to
// connecting directly and next to PgBouncer (the reference pure forwarder)?
//
// One run starts Postgres 18, PgBouncer (session mode, SCRAM) and pgcmek (the CLI
// `serve`, as in production, no encrypted columns), loads `pgbench -i -s 10` once,
// then runs `pgbench -S` (select-only) in -M simple and -M prepared at 1 client
// and at 16 clients (-j 2) against each target. Targets are interleaved: every
// (mode, clients) cell runs all targets back to back, in an order rotated each
// time, and the whole matrix repeats --rounds times, so drift on this shared
// 2-core machine (pgbench competes with the proxy for CPU) hits all targets alike.
//
// Each run first spends --warm-up seconds (default 10) unmeasured on its own
// connections: a fresh backend faults in the shared-buffer pages it touches,
// which on these VMs takes seconds to settle, while PgBouncer's pooled backends
// are warm already (bench/lib/pgbench.ts). The --seconds after it are measured.
// TPS: mean over rounds of the transactions completed in that window per second
// (with --warm-up 0: pgbench's "tps (without initial connection time)").
// Latency p50/p99: exact, over every transaction of every round, from pgbench's
// per-transaction log (-l). Proxy CPU: user+system time of the proxy process
// (from /proc) per transaction.
//
// A fourth target, `node-pipe` (bench/lib/node-relay.ts), is a bare Node relay
// (`socket.pipe()` both ways): the floor of any forwarder built on Node's
// sockets. pgcmek/node-pipe says what pgcmek's own framing costs; node-pipe/
// PgBouncer what the runtime costs. `--no-node-pipe` leaves it out.
//
// `--kernel-splice` adds a fifth (bench/lib/kernel-splice.c, root only): a relay
// that runs in the kernel (BPF sockmap), so no process wakes per message. It is
// the ceiling of any proxy hop on this machine; kernel-splice/direct says what
// the extra TCP hop alone costs, whatever runs the proxy.
//
//   node dist/bench/proxy.js [--seconds N] [--quick] [--rounds N] [--scale N] [--json]
//                            [--in-process] [--no-pgbouncer] [--no-node-pipe] [--kernel-splice]
//                            [--workers N] [--huge-pages on|off]
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startCluster, freePort } from '../src/dev/cluster.js';
import { pgbenchInit, runPgbench, runPgbenchMeasured, concat, summaryUsToMs, type PgTarget, type QueryMode } from './lib/pgbench.js';
import { findPgBouncer, startPgBouncer } from './lib/pgbouncer.js';
import { startPgcmek } from './lib/pgcmek.js';
import { startNodeRelay } from './lib/node-relay.js';
import { startKernelSplice } from './lib/kernel-splice.js';
import { onCleanup, runMain } from './lib/proc.js';
import type { ProcStat } from './lib/procstat.js';
import { postgresClusterCpu, procStat, settleBackends } from './lib/procstat.js';
import { nonNegativeInt, onOff } from './lib/args.js';
import { reserveHugePages } from './lib/huge-pages.js';
import { medianPairedRatio, ratio, summarize, type Summary } from './lib/stats.js';

interface Target {
  name: 'direct' | 'pgbouncer' | 'node-pipe' | 'kernel-splice' | 'pgcmek';
  conn: PgTarget;
  /** CPU/memory of the proxy process, when there is one. */
  stat?: () => ProcStat | undefined;
}

interface Cell {
  mode: QueryMode;
  clients: number;
  threads: number;
}

interface CellResult {
  mode: QueryMode;
  clients: number;
  target: Target['name'];
  tps: number;
  tpsRounds: number[];
  transactions: number;
  failed: number;
  latencyMs: Summary;
  /** Proxy CPU time per transaction, µs (undefined for direct). */
  proxyCpuUsPerTx?: number;
  /** Postgres' CPU time per transaction, µs: what the hop costs the server (more wake-ups, colder caches). */
  postgresCpuUsPerTx?: number;
}

const CELLS: Cell[] = [
  { mode: 'simple', clients: 1, threads: 1 },
  { mode: 'simple', clients: 16, threads: 2 },
  { mode: 'prepared', clients: 1, threads: 1 },
  { mode: 'prepared', clients: 16, threads: 2 },
];

function options() {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' },
      'warm-up': { type: 'string' },
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      scale: { type: 'string', default: '10' },
      json: { type: 'boolean', default: false },
      'in-process': { type: 'boolean', default: false },
      'no-pgbouncer': { type: 'boolean', default: false },
      'no-node-pipe': { type: 'boolean', default: false },
      'kernel-splice': { type: 'boolean', default: false },
      workers: { type: 'string' },
      'huge-pages': { type: 'string', default: 'on' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write('usage: node dist/bench/proxy.js [--seconds N (10)] [--warm-up N (10)] [--quick (3 s, 1 round, no warm-up)] [--rounds N (2)] [--scale N (10)] [--json] [--in-process] [--no-pgbouncer] [--no-node-pipe] [--kernel-splice] [--workers N (1)] [--huge-pages on|off (on)]\n');
    process.exit(0);
  }
  const int = (v: string | undefined, d: number, name: string): number => {
    const n = v === undefined ? d : Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
    return n;
  };
  const nonNegative = (v: string | undefined, d: number, name: string): number => (v === undefined ? d : nonNegativeInt(v, name));
  return {
    seconds: int(values.seconds, values.quick ? 3 : 10, 'seconds'),
    warmUp: nonNegative(values['warm-up'], values.quick ? 0 : 10, 'warm-up'),
    rounds: int(values.rounds, values.quick ? 1 : 2, 'rounds'),
    scale: int(values.scale, 10, 'scale'),
    json: values.json,
    how: values['in-process'] ? ('in-process' as const) : ('process' as const),
    pgbouncer: !values['no-pgbouncer'],
    nodePipe: !values['no-node-pipe'],
    kernelSplice: values['kernel-splice'],
    workers: int(values.workers, 1, 'workers'),
    hugePages: onOff(values['huge-pages'], 'huge-pages'),
  };
}

const fmt = (n: number | undefined, digits = 0): string => (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits));

async function main(): Promise<void> {
  const o = options();
  // Progress goes to stderr, so --json leaves stdout machine-readable.
  const say = (s: string): void => void process.stderr.write(s + '\n');
  const loadStart = loadavg();
  say(`bench:proxy: ${o.seconds}s per run after ${o.warmUp}s of warm-up, ${o.rounds} round(s), scale ${o.scale}, pgcmek ${o.how} (workers ${o.workers}), load average ${loadStart.map((l) => l.toFixed(2)).join(' ')}`);
  if (loadStart[0]! > cpus().length) say(`warning: the machine is already busy (1-min load ${loadStart[0]!.toFixed(1)} on ${cpus().length} CPUs): TPS will be noisy; proxy CPU µs/tx and p50 are the steadier figures`);

  // Fresh backends (pgcmek and direct open one per pgbench connection; PgBouncer keeps its own) fault in each 4 KiB page they touch.
  const hugePages = reserveHugePages(256 + 64, o.hugePages, say);
  const cluster = await startCluster({ flavour: '18', settings: { max_connections: 200, shared_buffers: "'256MB'", huge_pages: hugePages.setting } });
  onCleanup(() => cluster.stop());
  const pgbench = join(cluster.clientBin, 'pgbench');
  const conn = (port: number): PgTarget => ({ host: '127.0.0.1', port, user: cluster.user, password: cluster.password, database: 'postgres' });
  say(`postgres 18 on port ${cluster.port}; pgbench -i -s ${o.scale}...`);
  await pgbenchInit(pgbench, conn(cluster.port), o.scale);

  const targets: Target[] = [{ name: 'direct', conn: conn(cluster.port) }];
  let pgbouncerNote: string | undefined;
  if (o.pgbouncer) {
    const bin = findPgBouncer({ install: true, log: say });
    if (bin) {
      const b = await startPgBouncer(bin, { upstream: cluster, adminUrl: cluster.url(), user: cluster.user, password: cluster.password, port: await freePort() });
      onCleanup(() => b.stop());
      targets.push({ name: 'pgbouncer', conn: conn(b.port), stat: () => procStat(b.proc.pid) });
    } else {
      pgbouncerNote = 'pgbouncer not found and could not be installed: skipped (install it with `apt-get install -y pgbouncer`)';
      say(pgbouncerNote);
    }
  }
  if (o.nodePipe) {
    const relay = await startNodeRelay(await freePort(), cluster);
    onCleanup(() => relay.stop());
    targets.push({ name: 'node-pipe', conn: conn(relay.port), stat: relay.stat });
  }
  let spliceNote: string | undefined;
  if (o.kernelSplice) {
    const splice = await startKernelSplice(await freePort(), cluster);
    if ('unavailable' in splice) {
      spliceNote = `kernel-splice unavailable (${splice.unavailable}): skipped`;
      say(spliceNote);
    } else {
      onCleanup(() => splice.stop());
      targets.push({ name: 'kernel-splice', conn: conn(splice.port) });
    }
  }
  const pgcmek = await startPgcmek({ upstream: cluster, port: await freePort(), user: cluster.user, password: cluster.password, how: o.how, workers: o.workers, log: (s) => process.stderr.write(`[pgcmek] ${s}`) });
  onCleanup(() => pgcmek.stop());
  targets.push({ name: 'pgcmek', conn: conn(pgcmek.port), stat: pgcmek.stat });
  say(`targets: ${targets.map((t) => `${t.name}:${t.conn.port}`).join(', ')} (pgcmek ${pgcmek.how}, pid ${pgcmek.pid})`);

  // Warm-up (not measured): fills shared_buffers, JITs the proxy, opens PgBouncer's pool.
  for (const t of targets) {
    const w = await runPgbench(pgbench, t.conn, { mode: 'prepared', clients: 4, threads: 2, seconds: 2, latencies: false });
    if (!w.ok) throw new Error(`warm-up against ${t.name} failed: ${w.stderr}`);
  }

  const postgresCpu = postgresClusterCpu(cluster.dataDir);
  type Acc = { tps: number[]; transactions: number; failed: number; samples: Float64Array[]; cpuMs: number; cpuTx: number; pgMs: number; pgTx: number };
  const acc = new Map<string, Acc>();
  const key = (c: Cell, t: Target): string => `${c.mode}/${c.clients}/${t.name}`;
  let turn = 0;
  for (let round = 1; round <= o.rounds; round++) {
    for (const cell of CELLS) {
      const order = targets.map((_, i) => targets[(i + turn) % targets.length]!);
      turn++;
      for (const t of order) {
        await settleBackends();
        const m = await runPgbenchMeasured(pgbench, t.conn, { mode: cell.mode, clients: cell.clients, threads: cell.threads, seconds: o.seconds }, o.warmUp, [
          () => t.stat?.(),
          postgresCpu,
        ]);
        const r = m.result;
        const [before, pgBefore] = m.before;
        const [after, pgAfter] = m.after;
        if (!r.ok) throw new Error(`pgbench -M ${cell.mode} -c ${cell.clients} against ${t.name} failed (exit ${r.exit}): ${r.stderr.slice(-2000)}`);
        const a = acc.get(key(cell, t)) ?? { tps: [], transactions: 0, failed: 0, samples: [], cpuMs: 0, cpuTx: 0, pgMs: 0, pgTx: 0 };
        a.tps.push(r.tps);
        a.transactions += r.transactions;
        a.failed += r.failed;
        if (r.samplesUs) a.samples.push(r.samplesUs);
        if (before && after) {
          a.cpuMs += after.cpuMs - before.cpuMs;
          a.cpuTx += r.transactions;
        }
        if (pgBefore && pgAfter) {
          a.pgMs += pgAfter.cpuMs - pgBefore.cpuMs;
          a.pgTx += r.transactions;
        }
        acc.set(key(cell, t), a);
        say(`round ${round}/${o.rounds}  -M ${cell.mode.padEnd(8)} -c ${String(cell.clients).padStart(2)}  ${t.name.padEnd(13)}  ${fmt(r.tps)} tps  p50 ${fmt(r.latencyMs?.p50, 3)} ms  p99 ${fmt(r.latencyMs?.p99, 3)} ms`);
      }
    }
  }

  const results: CellResult[] = [];
  for (const cell of CELLS) {
    for (const t of targets) {
      const a = acc.get(key(cell, t))!;
      results.push({
        mode: cell.mode,
        clients: cell.clients,
        target: t.name,
        tps: a.tps.reduce((x, y) => x + y, 0) / a.tps.length,
        tpsRounds: a.tps,
        transactions: a.transactions,
        failed: a.failed,
        latencyMs: summaryUsToMs(summarize(concat(a.samples))),
        ...(t.stat && a.cpuTx > 0 && { proxyCpuUsPerTx: (a.cpuMs * 1000) / a.cpuTx }),
        ...(a.pgTx > 0 && { postgresCpuUsPerTx: (a.pgMs * 1000) / a.pgTx }),
      });
    }
  }
  const find = (c: Cell, name: Target['name']): CellResult | undefined => results.find((r) => r.mode === c.mode && r.clients === c.clients && r.target === name);
  const ratios = CELLS.map((c) => {
    const p = find(c, 'pgcmek')!;
    const d = find(c, 'direct')!;
    const b = find(c, 'pgbouncer');
    const n = find(c, 'node-pipe');
    const k = find(c, 'kernel-splice');
    return {
      mode: c.mode,
      clients: c.clients,
      tpsPgcmekOverDirect: ratio(p.tps, d.tps),
      tpsPgcmekOverPgbouncer: b ? ratio(p.tps, b.tps) : Number.NaN,
      // The targets of a cell run back to back in each round: the median of those ratios shrugs off one disturbed run.
      tpsPgcmekOverDirectMedianRound: medianPairedRatio(p.tpsRounds, d.tpsRounds),
      tpsPgcmekOverPgbouncerMedianRound: b ? medianPairedRatio(p.tpsRounds, b.tpsRounds) : Number.NaN,
      tpsPgcmekOverNodePipe: n ? ratio(p.tps, n.tps) : Number.NaN,
      tpsNodePipeOverPgbouncer: n && b ? ratio(n.tps, b.tps) : Number.NaN,
      p50PgcmekOverDirect: ratio(p.latencyMs.p50, d.latencyMs.p50),
      p99PgcmekOverDirect: ratio(p.latencyMs.p99, d.latencyMs.p99),
      p50PgcmekOverPgbouncer: b ? ratio(p.latencyMs.p50, b.latencyMs.p50) : Number.NaN,
      p99PgcmekOverPgbouncer: b ? ratio(p.latencyMs.p99, b.latencyMs.p99) : Number.NaN,
      ...(k && {
        tpsKernelSpliceOverDirectMedianRound: medianPairedRatio(k.tpsRounds, d.tpsRounds),
        tpsPgbouncerOverDirectMedianRound: b ? medianPairedRatio(b.tpsRounds, d.tpsRounds) : Number.NaN,
        tpsPgcmekOverKernelSpliceMedianRound: medianPairedRatio(p.tpsRounds, k.tpsRounds),
      }),
    };
  });
  const mem = pgcmek.stat();
  const report = {
    benchmark: 'proxy',
    machine: { cpus: cpus().length, node: process.version, loadavgStart: loadStart, loadavgEnd: loadavg() },
    settings: { seconds: o.seconds, warmUpSeconds: o.warmUp, rounds: o.rounds, scale: o.scale, postgres: '18', postgresPages: hugePages.describe, pgcmek: pgcmek.how, workers: o.workers, pgbouncer: targets.some((t) => t.name === 'pgbouncer') ? 'session, scram-sha-256' : 'skipped', workload: 'pgbench -S (select-only)' },
    results,
    ratios,
    pgcmekMemory: mem && { rssBytes: mem.rssBytes, peakRssBytes: mem.peakRssBytes },
    ...(pgbouncerNote && { note: pgbouncerNote }),
    ...(spliceNote && { kernelSpliceNote: spliceNote }),
  };

  if (o.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  const lines: string[] = [];
  lines.push('');
  lines.push(`pgbench -S, ${o.seconds}s${o.warmUp ? ` after ${o.warmUp}s of warm-up on the same connections` : ' from connect'} x ${o.rounds} round(s) per cell, scale ${o.scale}, Postgres 18 (${hugePages.describe}), ${cpus().length} CPUs, Node ${process.version}, 1-min load ${loadStart[0]!.toFixed(1)} -> ${loadavg()[0]!.toFixed(1)}`);
  lines.push('mode      clients  target         tps (mean)   rounds                 p50 ms   p99 ms  mean ms   CPU µs/tx: proxy  postgres');
  for (const r of results) {
    lines.push(
      `${r.mode.padEnd(9)} ${String(r.clients).padStart(7)}  ${r.target.padEnd(13)}  ${fmt(r.tps).padStart(10)}   ${r.tpsRounds.map((x) => fmt(x)).join('/').padEnd(20)}  ${fmt(r.latencyMs.p50, 3).padStart(7)}  ${fmt(r.latencyMs.p99, 3).padStart(7)}  ${fmt(r.latencyMs.mean, 3).padStart(7)}   ${fmt(r.proxyCpuUsPerTx, 1).padStart(14)}  ${fmt(r.postgresCpuUsPerTx, 1).padStart(8)}`,
    );
  }
  lines.push('');
  lines.push('ratios     clients  tps pgcmek/direct  tps pgcmek/pgbouncer  p50 pgcmek/direct  p99 pgcmek/direct  p50 pgcmek/pgbouncer  p99 pgcmek/pgbouncer  tps pgcmek/node-pipe  tps node-pipe/pgbouncer');
  for (const r of ratios) {
    lines.push(
      `${r.mode.padEnd(9)} ${String(r.clients).padStart(7)}  ${fmt(r.tpsPgcmekOverDirect, 2).padStart(17)}  ${fmt(r.tpsPgcmekOverPgbouncer, 2).padStart(20)}  ${fmt(r.p50PgcmekOverDirect, 2).padStart(17)}  ${fmt(r.p99PgcmekOverDirect, 2).padStart(17)}  ${fmt(r.p50PgcmekOverPgbouncer, 2).padStart(20)}  ${fmt(r.p99PgcmekOverPgbouncer, 2).padStart(20)}  ${fmt(r.tpsPgcmekOverNodePipe, 2).padStart(20)}  ${fmt(r.tpsNodePipeOverPgbouncer, 2).padStart(21)}`,
    );
  }
  lines.push('');
  lines.push('median of per-round tps ratios (targets run back to back in a round)');
  for (const r of ratios) {
    lines.push(`${r.mode.padEnd(9)} ${String(r.clients).padStart(7)}  pgcmek/direct ${fmt(r.tpsPgcmekOverDirectMedianRound, 2)}  pgcmek/pgbouncer ${fmt(r.tpsPgcmekOverPgbouncerMedianRound, 2)}`);
  }
  if (ratios.some((r) => r.tpsKernelSpliceOverDirectMedianRound !== undefined)) {
    lines.push('');
    lines.push('the ceiling of a proxy hop: kernel-splice relays in the kernel, no process wakes (median of per-round tps ratios)');
    for (const r of ratios) {
      lines.push(`${r.mode.padEnd(9)} ${String(r.clients).padStart(7)}  kernel-splice/direct ${fmt(r.tpsKernelSpliceOverDirectMedianRound, 2)}  pgbouncer/direct ${fmt(r.tpsPgbouncerOverDirectMedianRound, 2)}  pgcmek/direct ${fmt(r.tpsPgcmekOverDirectMedianRound, 2)}  pgcmek/kernel-splice ${fmt(r.tpsPgcmekOverKernelSpliceMedianRound, 2)}`);
    }
  }
  if (spliceNote) lines.push(spliceNote);
  if (mem) lines.push(`\npgcmek (${pgcmek.how}) RSS now ${fmt(mem.rssBytes / 2 ** 20, 1)} MiB, peak ${fmt(mem.peakRssBytes / 2 ** 20, 1)} MiB`);
  if (pgbouncerNote) lines.push(pgbouncerNote);
  process.stdout.write(lines.join('\n') + '\n');
}

await runMain(main);
