// `npm run bench:searchable`: lookups by token hash on a searchable (deterministic)
// column through pgcmek, next to the same lookups on a plaintext copy through
// pgcmek (issue 6's target: ≥ 0.8×) and direct.
//
// One run starts Postgres 18 and pgcmek (the CLI `serve` as a child process, as in
// production, fresh local KEK, `token_hash: { searchable: true }`), loads 100,000
// rows into `api_token` through pgcmek (COPY FROM STDIN, so the column holds
// deterministic envelopes) and the same plaintexts into `plain_token` direct, with
// a unique btree on both. A third copy, `api_token.plain_hash` (a plaintext column
// of the configured table), isolates the searchable work from the SQL analysis any
// statement on a configured table gets. pgbench measures (a C client: the load
// generator does not compete with the proxy for a Node event loop), 8 clients:
//   prepared: -M prepared  SELECT id FROM … WHERE token_hash = :h   (Parse once, a Bind per lookup)
//   extended: -M extended  the same, unnamed (a Parse per lookup, as psycopg 3 / node-postgres)
//   simple:   -M simple    SELECT id FROM … WHERE token_hash = ':h'  (a literal, as Django with psycopg2)
// Each cell also reports the CPU time per lookup of pgcmek and of Postgres (the
// whole cluster: on a 2-core machine a costlier lookup at the database lowers the
// rate as much as one in the proxy).
// Lookups pick a row uniformly (default) or zipfian (--skew S: a few hot tokens).
// Tokens are 19-digit strings (pgbench can only compute integers); a 64-character
// hash costs the proxy about 1 µs more per lookup (longer AES/HMAC input). Cells
// and targets are interleaved, the target order rotated per round, for --rounds.
//
//   node dist/bench/searchable.js [--seconds N (5)] [--rounds N (3)] [--clients N (8)] [--rows N (100000)]
//                                 [--modes prepared,extended,simple] [--skew S (0)] [--json] [--node PATH]
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import postgres from 'postgres';
import { freePort, startCluster } from '../src/dev/cluster.js';
import { concat, runPgbench, summaryUsToMs, type PgTarget, type QueryMode } from './lib/pgbench.js';
import { startPgcmek } from './lib/pgcmek.js';
import { onCleanup, runMain } from './lib/proc.js';
import { ratio, summarize, type Summary } from './lib/stats.js';

const DATABASE = 'bench_srch';
const TARGET_RATIO = 0.8;
/** token(i): what pgbench computes with `\set h BASE + :i * STEP` (fits in a bigint for i ≤ 10^6). */
const BASE = 1_000_000_000_000_000_000n;
const STEP = 8_999_999_999_999n;
const token = (i: number) => String(BASE + BigInt(i) * STEP);

type TargetName = 'encrypted via pgcmek' | 'plaintext via pgcmek' | 'plain col, enc table' | 'plaintext direct';
interface Target {
  name: TargetName;
  conn: PgTarget;
  table: string;
  column: string;
  stat?: () => { cpuMs: number } | undefined;
}

function options() {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '3' },
      clients: { type: 'string', default: '8' },
      rows: { type: 'string', default: '100000' },
      modes: { type: 'string', default: 'prepared,extended,simple' },
      skew: { type: 'string', default: '0' },
      json: { type: 'boolean', default: false },
      node: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: node dist/bench/searchable.js [--seconds N (5)] [--rounds N (3)] [--clients N (8)] [--rows N (100000)] [--modes prepared,extended,simple] [--skew S (0)] [--json] [--node PATH]\n',
    );
    process.exit(0);
  }
  const int = (v: string, name: string, max = Number.MAX_SAFE_INTEGER): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`--${name} must be an integer in 1..${max}`);
    return n;
  };
  const modes = values.modes.split(',').map((m) => m.trim()) as QueryMode[];
  for (const m of modes) if (!['prepared', 'extended', 'simple'].includes(m)) throw new Error(`--modes: unknown mode ${m}`);
  const skew = Number(values.skew);
  if (!(skew === 0 || (skew >= 1.001 && skew <= 1000))) throw new Error('--skew must be 0 (uniform) or a zipfian parameter in 1.001..1000');
  return {
    skew,
    seconds: int(values.seconds, 'seconds'),
    rounds: int(values.rounds, 'rounds'),
    clients: int(values.clients, 'clients'),
    rows: int(values.rows, 'rows', 1_000_000),
    modes,
    json: values.json,
    node: values.node,
  };
}

const fmt = (n: number | undefined, digits = 0): string => (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits));

/**
 * CPU time (ms) of the Postgres cluster so far: the postmaster and its live
 * children, plus what its exited children used (cutime/cstime: a pgbench run's
 * backends end with the run). What a lookup costs the database matters as much
 * as the proxy's share when both run on the same 2 cores.
 */
function postgresCpu(dataDir: string): () => { cpuMs: number } | undefined {
  const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const ticks = (p: number, withExited: boolean): number => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
      return f[11]! + f[12]! + (withExited ? f[13]! + f[14]! : 0);
    } catch {
      return 0; // a backend that ended between listing and reading
    }
  };
  return () => {
    try {
      let t = ticks(pid, true);
      for (const task of readdirSync(`/proc/${pid}/task`)) {
        const kids = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
        if (kids) for (const k of kids.split(/\s+/)) t += ticks(Number(k), true);
      }
      return { cpuMs: t * 10 }; // USER_HZ = 100
    } catch {
      return undefined;
    }
  };
}

/** `api_token` through pgcmek (COPY: deterministic envelopes), `plain_token` direct; unique btrees on both. */
async function load(direct: PgTarget, viaProxy: PgTarget, rows: number): Promise<void> {
  const d = new pg.Client(direct);
  await d.connect();
  try {
    await d.query(`
      CREATE TABLE api_token (id int PRIMARY KEY, token_hash text NOT NULL, plain_hash text NOT NULL);
      CREATE TABLE plain_token (id int PRIMARY KEY, token_hash text NOT NULL);
    `);
    await d.query(`INSERT INTO plain_token SELECT g, (${BASE}::numeric + g * ${STEP})::text FROM generate_series(1, ${rows}) g`);
  } finally {
    await d.end();
  }
  const sql = postgres({ ...viaProxy, max: 1, onnotice: () => {} });
  try {
    const w = await sql`COPY api_token (id, token_hash, plain_hash) FROM STDIN`.writable();
    async function* lines() {
      for (let at = 1; at <= rows; at += 1000) {
        let chunk = '';
        for (let i = at; i < at + 1000 && i <= rows; i++) chunk += `${i}\t${token(i)}\t${token(i)}\n`;
        yield chunk;
      }
    }
    await pipeline(Readable.from(lines()), w);
  } finally {
    await sql.end();
  }
  const d2 = new pg.Client(direct);
  await d2.connect();
  try {
    await d2.query(`
      CREATE UNIQUE INDEX api_token_token_hash_key ON api_token (token_hash);
      CREATE UNIQUE INDEX api_token_plain_hash_key ON api_token (plain_hash);
      CREATE UNIQUE INDEX plain_token_token_hash_key ON plain_token (token_hash);
      ANALYZE api_token; ANALYZE plain_token;
    `);
  } finally {
    await d2.end();
  }
}

/** Fails the run unless the column holds envelopes, lookups through pgcmek find their rows, and the plan is an index scan. */
async function verify(direct: PgTarget, viaProxy: PgTarget, rows: number): Promise<string> {
  const d = new pg.Client(direct);
  const p = new pg.Client(viaProxy);
  await d.connect();
  await p.connect();
  try {
    const stored = await d.query(`SELECT count(*)::int AS n FROM api_token WHERE starts_with(token_hash, 'cmek:v1:')`);
    if (stored.rows[0].n !== rows) throw new Error('sanity check failed: api_token.token_hash is not encrypted');
    for (const i of [1, Math.ceil(rows / 2), rows]) {
      const a = await p.query('SELECT id FROM api_token WHERE token_hash = $1', [token(i)]);
      const b = await p.query(`SELECT id FROM api_token WHERE token_hash = '${token(i)}'`);
      if (a.rows[0]?.id !== i || b.rows[0]?.id !== i) throw new Error(`sanity check failed: lookup ${i} through pgcmek`);
    }
    const plan = await p.query('EXPLAIN SELECT id FROM api_token WHERE token_hash = $1', [token(7)]);
    const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
    if (!/Index (Only )?Scan|Bitmap Index Scan/.test(text)) throw new Error(`sanity check failed: no index scan:\n${text}`);
    return text;
  } finally {
    await d.end();
    await p.end();
  }
}

/** One lookup by a random row's token: uniform, or zipfian (a few hot tokens, as in token authentication). */
function script(dir: string, mode: QueryMode, t: Target, rows: number, skew: number): string {
  const value = mode === 'simple' ? `':h'` : ':h';
  const pick = skew === 0 ? `random(1, ${rows})` : `random_zipfian(1, ${rows}, ${skew})`;
  const path = join(dir, `${mode}-${t.table}-${t.column}.sql`);
  writeFileSync(path, `\\set i ${pick}\n\\set h ${BASE} + :i * ${STEP}\nSELECT id FROM ${t.table} WHERE ${t.column} = ${value};\n`);
  return path;
}

async function main(): Promise<void> {
  const o = options();
  const say = (s: string): void => void process.stderr.write(s + '\n');
  say(`bench:searchable: ${o.rows} rows, ${o.skew === 0 ? 'uniform' : `zipfian(${o.skew})`} lookups, ${o.seconds}s per run, ${o.rounds} round(s), ${o.clients} clients, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);

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
    extraYaml: ['encrypted:', '  public.api_token:', '    token_hash: { searchable: true }'].join('\n'),
    log: (s) => process.stderr.write(`[pgcmek] ${s}`),
    ...(o.node && { node: o.node }),
  });
  onCleanup(() => pgcmek.stop());
  const conn = (port: number): PgTarget => ({ host: '127.0.0.1', port, user: cluster.user, password: cluster.password, database: DATABASE });
  const direct = conn(cluster.port);
  const viaProxy = conn(pgcmek.port);
  say(`postgres 18 on ${cluster.port}, pgcmek (child process, pid ${pgcmek.pid}) on ${pgcmek.port}; loading ${o.rows} rows...`);
  const t0 = performance.now();
  await load(direct, viaProxy, o.rows);
  say(`loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s (COPY through pgcmek, then indexes)`);
  const explain = await verify(direct, viaProxy, o.rows);
  say(`EXPLAIN through pgcmek:\n${explain}`);

  const targets: Target[] = [
    { name: 'encrypted via pgcmek', conn: viaProxy, table: 'api_token', column: 'token_hash', stat: pgcmek.stat },
    { name: 'plaintext via pgcmek', conn: viaProxy, table: 'plain_token', column: 'token_hash', stat: pgcmek.stat },
    // The same lookup on a plaintext column of the configured table: the SQL analysis runs, no crypto.
    { name: 'plain col, enc table', conn: viaProxy, table: 'api_token', column: 'plain_hash', stat: pgcmek.stat },
    { name: 'plaintext direct', conn: direct, table: 'plain_token', column: 'token_hash' },
  ];
  const pgStat = postgresCpu(cluster.dataDir);
  const dir = mkdtempSync(join(tmpdir(), 'pgcmek-bench-srch-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const run = (mode: QueryMode, t: Target, seconds: number) =>
    runPgbench(join(cluster.clientBin, 'pgbench'), t.conn, {
      mode,
      clients: o.clients,
      threads: 2,
      seconds,
      selectOnly: false,
      latencies: true,
      extraArgs: ['-n', '-f', script(dir, mode, t, o.rows, o.skew)],
    });

  for (const mode of o.modes) {
    for (const t of targets) {
      const r = await run(mode, t, 2);
      if (!r.ok) throw new Error(`warm-up ${mode} against ${t.name} failed: ${r.stderr.slice(-2000)}`);
    }
  }

  type Acc = { tps: number[]; samples: Float64Array[]; cpuMs: number; cpuOps: number; pgCpuMs: number; pgOps: number };
  /** The backends of a finished run exit just after it: wait until the cluster's CPU time settles. */
  const settle = () => new Promise((r) => setTimeout(r, 300));
  const acc = new Map<string, Acc>();
  let turn = 0;
  for (let round = 1; round <= o.rounds; round++) {
    for (const mode of o.modes) {
      const order = targets.map((_, i) => targets[(i + turn) % targets.length]!);
      turn++;
      for (const t of order) {
        await settle();
        const before = t.stat?.();
        const pgBefore = pgStat();
        const r = await run(mode, t, o.seconds);
        await settle();
        const after = t.stat?.();
        const pgAfter = pgStat();
        if (!r.ok) throw new Error(`${mode} against ${t.name} failed (exit ${r.exit}): ${r.stderr.slice(-2000)}`);
        const a = acc.get(`${mode}/${t.name}`) ?? { tps: [], samples: [], cpuMs: 0, cpuOps: 0, pgCpuMs: 0, pgOps: 0 };
        if (pgBefore && pgAfter) {
          a.pgCpuMs += pgAfter.cpuMs - pgBefore.cpuMs;
          a.pgOps += r.transactions;
        }
        a.tps.push(r.tps);
        if (r.samplesUs) a.samples.push(r.samplesUs);
        if (before && after) {
          a.cpuMs += after.cpuMs - before.cpuMs;
          a.cpuOps += r.transactions;
        }
        acc.set(`${mode}/${t.name}`, a);
        say(`round ${round}/${o.rounds}  ${mode.padEnd(8)}  ${t.name.padEnd(20)}  ${fmt(r.tps)} lookups/s  p50 ${fmt(r.latencyMs?.p50, 3)} ms  p99 ${fmt(r.latencyMs?.p99, 3)} ms`);
      }
    }
  }

  const results = o.modes.flatMap((mode) =>
    targets.map((t) => {
      const a = acc.get(`${mode}/${t.name}`)!;
      return {
        mode,
        target: t.name,
        lookupsPerSec: a.tps.reduce((x, y) => x + y, 0) / a.tps.length,
        rounds: a.tps,
        latencyMs: summaryUsToMs(summarize(concat(a.samples))) as Summary,
        ...(a.cpuOps > 0 && { proxyCpuUsPerLookup: (a.cpuMs * 1000) / a.cpuOps }),
        ...(a.pgOps > 0 && { postgresCpuUsPerLookup: (a.pgCpuMs * 1000) / a.pgOps }),
      };
    }),
  );
  const get = (mode: QueryMode, t: TargetName) => results.find((r) => r.mode === mode && r.target === t)!;
  const ratios = o.modes.map((mode) => {
    const enc = get(mode, 'encrypted via pgcmek');
    const plain = get(mode, 'plaintext via pgcmek');
    const r = ratio(enc.lookupsPerSec, plain.lookupsPerSec);
    return {
      mode,
      encryptedOverPlaintextViaPgcmek: r,
      target: TARGET_RATIO,
      meetsTarget: r >= TARGET_RATIO,
      encryptedOverPlainColumnOfEncryptedTable: ratio(enc.lookupsPerSec, get(mode, 'plain col, enc table').lookupsPerSec),
      encryptedViaPgcmekOverDirect: ratio(enc.lookupsPerSec, get(mode, 'plaintext direct').lookupsPerSec),
      proxyCpuUsPerLookupEncrypted: enc.proxyCpuUsPerLookup,
      proxyCpuUsPerLookupPlaintext: plain.proxyCpuUsPerLookup,
      postgresCpuUsPerLookupEncrypted: enc.postgresCpuUsPerLookup,
      postgresCpuUsPerLookupPlaintext: plain.postgresCpuUsPerLookup,
    };
  });

  const report = {
    benchmark: 'searchable',
    machine: { cpus: cpus().length, node: process.version, loadavg: loadavg() },
    settings: { rows: o.rows, distribution: o.skew === 0 ? 'uniform' : `zipfian(${o.skew})`, seconds: o.seconds, rounds: o.rounds, clients: o.clients, postgres: '18', pgcmek: 'child process (cli serve), workers 1, local KEK' },
    results,
    ratios,
  };
  if (o.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  const lines = ['', `pgbench -c ${o.clients} -j 2, ${o.seconds}s x ${o.rounds} round(s) per cell, ${o.rows} rows, ${report.settings.distribution} lookups, Postgres 18, ${cpus().length} CPUs, Node ${process.version}`];
  lines.push('mode      target                  lookups/s (mean)  rounds                    p50 ms   p99 ms   CPU µs/lookup: pgcmek  postgres');
  for (const r of results) {
    lines.push(
      `${r.mode.padEnd(8)}  ${r.target.padEnd(22)}  ${fmt(r.lookupsPerSec).padStart(16)}  ${r.rounds.map((x) => fmt(x)).join('/').padEnd(24)}  ${fmt(r.latencyMs.p50, 3).padStart(7)}  ${fmt(r.latencyMs.p99, 3).padStart(7)}   ${fmt(r.proxyCpuUsPerLookup, 1).padStart(20)}  ${fmt(r.postgresCpuUsPerLookup, 1).padStart(8)}`,
    );
  }
  lines.push('');
  for (const r of ratios) {
    lines.push(
      `${r.mode.padEnd(8)}  encrypted/plaintext via pgcmek ${fmt(r.encryptedOverPlaintextViaPgcmek, 2)} (target ≥ ${r.target}: ${r.meetsTarget ? 'met' : 'NOT met'})` +
        `   vs a plain column of the configured table ${fmt(r.encryptedOverPlainColumnOfEncryptedTable, 2)}   vs direct ${fmt(r.encryptedViaPgcmekOverDirect, 2)}`,
    );
  }
  process.stdout.write(lines.join('\n') + '\n');
}

await runMain(main);
