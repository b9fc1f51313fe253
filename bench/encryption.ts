// `npm run bench:encryption`: what does transparent encryption cost next to the
// same traffic through pgcmek on plaintext columns, and next to Postgres direct?
//
// One run starts Postgres 18 and pgcmek (the CLI `serve` as a child process, as in
// production, with a fresh local KEK and an `encrypted:` map naming enc.secret and
// enc_ins.secret), loads 1,000 rows of 38-character secrets twice — encrypted
// through pgcmek into `enc`, plaintext into `plain` — then measures with pgbench
// (8 clients, 2 threads; a C client, so the load generator does not compete with
// the proxy for a Node event loop):
//   read:          -M prepared  SELECT id, secret … WHERE id BETWEEN :a AND :a + 9  (10 rows × 1 column)
//   insert:        -M prepared  INSERT INTO … (secret) VALUES (:s)                  (1 parameter)
//   insert-simple: -M simple    INSERT INTO … (secret) VALUES ('…-:n')  (a literal that differs per
//                  execution, as from Django with psycopg2: every text is new to the proxy)
// each against three targets: the encrypted table through pgcmek, the plaintext
// table through pgcmek, the plaintext table direct. Cells and targets are
// interleaved (target order rotated every run) for --rounds rounds, so drift on a
// shared machine hits every target alike. Before measuring, the run checks the
// proxy really decrypts (through pgcmek: plaintext; direct: envelopes).
//
//   node dist/bench/encryption.js [--seconds N (5)] [--rounds N (3)] [--clients N (8)] [--json]
//                                 [--workloads read,insert,insert-simple] [--node PATH (the Node binary that runs pgcmek; default this one)]
import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { freePort, startCluster } from '../src/dev/cluster.js';
import { concat, runPgbench, summaryUsToMs, type PgTarget, type QueryMode } from './lib/pgbench.js';
import { startPgcmek } from './lib/pgcmek.js';
import { onCleanup, runMain } from './lib/proc.js';
import { ratio, summarize, type Summary } from './lib/stats.js';

const ROWS = 1_000;
const DATABASE = 'bench_enc';
/** A realistic secret: a webhook signing secret's length. */
const SECRET = 'whsec_' + '0123456789abcdef'.repeat(2);
/** insert-simple writes this, then a random number: a new literal per execution. */
const SIMPLE_PREFIX = SECRET.slice(0, -10) + '-';

const WORKLOADS = ['read', 'insert', 'insert-simple'] as const;
type Workload = (typeof WORKLOADS)[number];
const MODE: Record<Workload, QueryMode> = { read: 'prepared', insert: 'prepared', 'insert-simple': 'simple' };
type TargetName = 'encrypted via pgcmek' | 'plaintext via pgcmek' | 'plaintext direct';

interface Target {
  name: TargetName;
  conn: PgTarget;
  table: Record<Workload, string>;
  /** The proxy's CPU/memory, when the target goes through it. */
  stat?: () => { cpuMs: number } | undefined;
}

interface CellResult {
  workload: Workload;
  target: TargetName;
  opsPerSec: number;
  rounds: number[];
  ops: number;
  latencyMs: Summary;
  proxyCpuUsPerOp?: number;
}

const TARGETS_RATIO: Record<Workload, number> = { read: 0.85, insert: 0.8, 'insert-simple': 0.8 };

function options() {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '3' },
      clients: { type: 'string', default: '8' },
      workloads: { type: 'string', default: WORKLOADS.join(',') },
      json: { type: 'boolean', default: false },
      node: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write('usage: node dist/bench/encryption.js [--seconds N (5)] [--rounds N (3)] [--clients N (8)] [--workloads read,insert,insert-simple] [--json] [--node PATH]\n');
    process.exit(0);
  }
  const int = (v: string, name: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
    return n;
  };
  const workloads = values.workloads.split(',').map((w) => w.trim()) as Workload[];
  for (const w of workloads) if (!WORKLOADS.includes(w)) throw new Error(`--workloads: unknown workload ${w}`);
  return {
    seconds: int(values.seconds, 'seconds'),
    rounds: int(values.rounds, 'rounds'),
    clients: int(values.clients, 'clients'),
    workloads,
    json: values.json,
    node: values.node,
  };
}

const fmt = (n: number | undefined, digits = 0): string => (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits));

/** Creates the tables and loads the rows: `enc` through pgcmek (so it holds envelopes), `plain` direct. */
async function load(direct: PgTarget, viaProxy: PgTarget): Promise<void> {
  const d = new pg.Client(direct);
  await d.connect();
  try {
    await d.query(`
      CREATE TABLE enc (id int PRIMARY KEY, secret text NOT NULL);
      CREATE TABLE plain (id int PRIMARY KEY, secret text NOT NULL);
      CREATE TABLE enc_ins (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, secret text NOT NULL);
      CREATE TABLE plain_ins (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, secret text NOT NULL);
    `);
    await d.query(`INSERT INTO plain SELECT g, $1 || g FROM generate_series(1, ${ROWS}) g`, [SECRET.slice(0, -4)]);
  } finally {
    await d.end();
  }
  const p = new pg.Client(viaProxy);
  await p.connect();
  try {
    for (let start = 1; start <= ROWS; start += 100) {
      const ids = Array.from({ length: Math.min(100, ROWS - start + 1) }, (_, i) => start + i);
      const values = ids.map((_, i) => `($${2 * i + 1}::int, $${2 * i + 2})`).join(', ');
      await p.query(`INSERT INTO enc (id, secret) VALUES ${values}`, ids.flatMap((id) => [id, SECRET.slice(0, -4) + id]));
    }
  } finally {
    await p.end();
  }
}

/** Fails the run unless pgcmek decrypts `enc` and the server stores only envelopes in it. */
async function verify(direct: PgTarget, viaProxy: PgTarget): Promise<void> {
  const d = new pg.Client(direct);
  const p = new pg.Client(viaProxy);
  await d.connect();
  await p.connect();
  try {
    const stored = await d.query(`SELECT count(*)::int AS n FROM enc WHERE secret LIKE 'cmek:v1:%'`);
    const read = await p.query('SELECT id, secret FROM enc WHERE id BETWEEN 1 AND 10 ORDER BY id');
    const ok = stored.rows[0].n === ROWS && read.rows.length === 10 && read.rows.every((r) => r.secret === SECRET.slice(0, -4) + r.id);
    if (!ok) throw new Error('sanity check failed: pgcmek does not encrypt/decrypt enc.secret as configured');
  } finally {
    await d.end();
    await p.end();
  }
}

function scripts(dir: string): Record<Workload, (table: string) => string> {
  const files = new Map<string, string>();
  const file = (name: string, text: string): string => {
    if (!files.has(name)) {
      const path = join(dir, `${name}.sql`);
      writeFileSync(path, text);
      files.set(name, path);
    }
    return files.get(name)!;
  };
  return {
    read: (t) => file(`read-${t}`, `\\set a random(1, ${ROWS - 9})\nSELECT id, secret FROM ${t} WHERE id BETWEEN :a AND :a + 9;\n`),
    insert: (t) => file(`insert-${t}`, `INSERT INTO ${t} (secret) VALUES (:s);\n`),
    // pgbench interpolates :n into the text in simple mode: a new statement text per execution.
    'insert-simple': (t) =>
      file(`insert-simple-${t}`, `\\set n random(1, 1000000000)\nINSERT INTO ${t} (secret) VALUES ('${SIMPLE_PREFIX}:n');\n`),
  };
}

async function truncateInserts(direct: PgTarget): Promise<void> {
  const d = new pg.Client(direct);
  await d.connect();
  await d.query('TRUNCATE enc_ins, plain_ins');
  await d.end();
}

async function main(): Promise<void> {
  const o = options();
  const say = (s: string): void => void process.stderr.write(s + '\n');
  say(`bench:encryption: ${o.seconds}s per run, ${o.rounds} round(s), ${o.clients} clients, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  const cluster = await startCluster({ flavour: '18', settings: { max_connections: 100 } });
  onCleanup(() => cluster.stop());
  const admin = new pg.Client(cluster.url());
  await admin.connect();
  await admin.query(`CREATE DATABASE ${DATABASE}`);
  await admin.end();

  const pgcmek = await startPgcmek({
    upstream: cluster,
    port: await freePort(),
    user: cluster.user,
    password: cluster.password,
    extraYaml: ['encrypted:', '  public.enc: [secret]', '  public.enc_ins: [secret]'].join('\n'),
    log: (s) => process.stderr.write(`[pgcmek] ${s}`),
    ...(o.node && { node: o.node }),
  });
  onCleanup(() => pgcmek.stop());
  const conn = (port: number): PgTarget => ({ host: '127.0.0.1', port, user: cluster.user, password: cluster.password, database: DATABASE });
  const direct = conn(cluster.port);
  const viaProxy = conn(pgcmek.port);
  say(`postgres 18 on ${cluster.port}, pgcmek (child process, pid ${pgcmek.pid}) on ${pgcmek.port}; loading ${ROWS} rows per table...`);
  await load(direct, viaProxy);
  await verify(direct, viaProxy);

  const targets: Target[] = [
    { name: 'encrypted via pgcmek', conn: viaProxy, table: { read: 'enc', insert: 'enc_ins', 'insert-simple': 'enc_ins' }, stat: pgcmek.stat },
    { name: 'plaintext via pgcmek', conn: viaProxy, table: { read: 'plain', insert: 'plain_ins', 'insert-simple': 'plain_ins' }, stat: pgcmek.stat },
    { name: 'plaintext direct', conn: direct, table: { read: 'plain', insert: 'plain_ins', 'insert-simple': 'plain_ins' } },
  ];
  const dir = mkdtempSync(join(tmpdir(), 'pgcmek-bench-enc-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const script = scripts(dir);
  const run = (w: Workload, t: Target, seconds: number) =>
    runPgbench(join(cluster.clientBin, 'pgbench'), t.conn, {
      mode: MODE[w],
      clients: o.clients,
      threads: 2,
      seconds,
      selectOnly: false,
      latencies: true,
      extraArgs: ['-n', '-f', script[w](t.table[w]), '-D', `s=${SECRET}`],
    });

  // Warm-up (not measured): JITs the proxy's paths, caches the DEK, fills shared_buffers.
  for (const w of o.workloads) {
    for (const t of targets) {
      const r = await run(w, t, 2);
      if (!r.ok) throw new Error(`warm-up ${w} against ${t.name} failed: ${r.stderr.slice(-2000)}`);
    }
  }

  type Acc = { tps: number[]; ops: number; samples: Float64Array[]; cpuMs: number; cpuOps: number };
  const acc = new Map<string, Acc>();
  let turn = 0;
  for (let round = 1; round <= o.rounds; round++) {
    for (const w of o.workloads) {
      const order = targets.map((_, i) => targets[(i + turn) % targets.length]!);
      turn++;
      for (const t of order) {
        if (w !== 'read') await truncateInserts(direct);
        const before = t.stat?.();
        const r = await run(w, t, o.seconds);
        const after = t.stat?.();
        if (!r.ok) throw new Error(`${w} against ${t.name} failed (exit ${r.exit}): ${r.stderr.slice(-2000)}`);
        const a = acc.get(`${w}/${t.name}`) ?? { tps: [], ops: 0, samples: [], cpuMs: 0, cpuOps: 0 };
        a.tps.push(r.tps);
        a.ops += r.transactions;
        if (r.samplesUs) a.samples.push(r.samplesUs);
        if (before && after) {
          a.cpuMs += after.cpuMs - before.cpuMs;
          a.cpuOps += r.transactions;
        }
        acc.set(`${w}/${t.name}`, a);
        say(`round ${round}/${o.rounds}  ${w.padEnd(13)}  ${t.name.padEnd(20)}  ${fmt(r.tps)} ops/s  p50 ${fmt(r.latencyMs?.p50, 3)} ms  p99 ${fmt(r.latencyMs?.p99, 3)} ms`);
      }
    }
  }

  const results: CellResult[] = [];
  for (const w of o.workloads) {
    for (const t of targets) {
      const a = acc.get(`${w}/${t.name}`)!;
      results.push({
        workload: w,
        target: t.name,
        opsPerSec: a.tps.reduce((x, y) => x + y, 0) / a.tps.length,
        rounds: a.tps,
        ops: a.ops,
        latencyMs: summaryUsToMs(summarize(concat(a.samples))),
        ...(a.cpuOps > 0 && { proxyCpuUsPerOp: (a.cpuMs * 1000) / a.cpuOps }),
      });
    }
  }
  const get = (w: Workload, t: TargetName) => results.find((r) => r.workload === w && r.target === t)!;
  const ratios = o.workloads.map((w) => {
    const enc = get(w, 'encrypted via pgcmek');
    const plain = get(w, 'plaintext via pgcmek');
    const dir = get(w, 'plaintext direct');
    const encOverPlain = ratio(enc.opsPerSec, plain.opsPerSec);
    return {
      workload: w,
      encryptedOverPlaintextViaPgcmek: encOverPlain,
      target: TARGETS_RATIO[w],
      meetsTarget: encOverPlain >= TARGETS_RATIO[w],
      plaintextViaPgcmekOverDirect: ratio(plain.opsPerSec, dir.opsPerSec),
      encryptedViaPgcmekOverDirect: ratio(enc.opsPerSec, dir.opsPerSec),
      proxyCpuUsPerOpEncrypted: enc.proxyCpuUsPerOp,
      proxyCpuUsPerOpPlaintext: plain.proxyCpuUsPerOp,
    };
  });

  const report = {
    benchmark: 'encryption',
    machine: { cpus: cpus().length, node: process.version, loadavg: loadavg() },
    settings: {
      seconds: o.seconds,
      rounds: o.rounds,
      clients: o.clients,
      postgres: '18',
      pgcmek: 'child process (cli serve), workers 1, local KEK, default DEK policy',
      read: `pgbench -M prepared: SELECT id, secret … WHERE id BETWEEN :a AND :a + 9 (10 rows × 1 column of ${SECRET.length} chars)`,
      insert: `pgbench -M prepared: INSERT INTO … (secret) VALUES (:s) (1 parameter of ${SECRET.length} chars)`,
      insertSimple: `pgbench -M simple: INSERT INTO … (secret) VALUES ('…-:n') (a literal of ${SIMPLE_PREFIX.length + 1}–${SIMPLE_PREFIX.length + 10} chars, new per execution)`,
    },
    results,
    ratios,
  };
  if (o.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  const lines: string[] = ['', `pgbench -c ${o.clients} -j 2, ${o.seconds}s x ${o.rounds} round(s) per cell, Postgres 18, ${cpus().length} CPUs, Node ${process.version}`];
  lines.push('workload       target                  ops/s (mean)  rounds                    p50 ms   p99 ms   pgcmek CPU µs/op');
  for (const r of results) {
    lines.push(
      `${r.workload.padEnd(13)}  ${r.target.padEnd(22)}  ${fmt(r.opsPerSec).padStart(12)}  ${r.rounds.map((x) => fmt(x)).join('/').padEnd(24)}  ${fmt(r.latencyMs.p50, 3).padStart(7)}  ${fmt(r.latencyMs.p99, 3).padStart(7)}   ${fmt(r.proxyCpuUsPerOp, 1).padStart(8)}`,
    );
  }
  lines.push('');
  for (const r of ratios) {
    lines.push(
      `${r.workload.padEnd(13)}  encrypted/plaintext via pgcmek ${fmt(r.encryptedOverPlaintextViaPgcmek, 2)} (target ≥ ${r.target}: ${r.meetsTarget ? 'met' : 'NOT met'})` +
        `   plaintext via pgcmek/direct ${fmt(r.plaintextViaPgcmekOverDirect, 2)}   encrypted via pgcmek/direct ${fmt(r.encryptedViaPgcmekOverDirect, 2)}`,
    );
  }
  process.stdout.write(lines.join('\n') + '\n');
}

await runMain(main);
