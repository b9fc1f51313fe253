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
// and targets are interleaved, the target order rotated per round, for --rounds
// (bench/lib/cells.ts).
//
//   node dist/bench/searchable.js [--seconds N (5)] [--warm-up N (5)] [--rounds N (3)] [--clients N (8)] [--rows N (100000)]
//                                 [--modes prepared,extended,simple] [--skew S (0)] [--json] [--node PATH] [--huge-pages on|off (on)]
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { COMMON_OPTIONS, commonArgs, positiveInt } from './lib/args.js';
import { runCells } from './lib/cells.js';
import { settleTables, withClient } from './lib/client.js';
import { startPgAndPgcmek } from './lib/pg-pgcmek.js';
import type { PgTarget, QueryMode } from './lib/pgbench.js';
import { runMain, tempDir } from './lib/proc.js';
import { cellResult, fmt, headlineRatio, printReport, resultsJson, resultTable, type Unit } from './lib/report.js';
import { ratio } from './lib/stats.js';

const DATABASE = 'bench_srch';
const TARGET_RATIO = 0.8;
const UNIT: Unit = { many: 'lookups', one: 'Lookup' };
/** The longest mode's name. */
const CELL_WIDTH = 8;
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
      ...COMMON_OPTIONS,
      rows: { type: 'string', default: '100000' },
      modes: { type: 'string', default: 'prepared,extended,simple' },
      skew: { type: 'string', default: '0' },
    },
  });
  const common = commonArgs(
    values,
    'node dist/bench/searchable.js [--seconds N (5)] [--warm-up N (5)] [--rounds N (3)] [--clients N (8)] [--rows N (100000)] [--modes prepared,extended,simple] [--skew S (0)] [--json] [--node PATH] [--huge-pages on|off (on)]',
  );
  const modes = values.modes.split(',').map((m) => m.trim()) as QueryMode[];
  for (const m of modes) if (!['prepared', 'extended', 'simple'].includes(m)) throw new Error(`--modes: unknown mode ${m}`);
  const skew = Number(values.skew);
  if (!(skew === 0 || (skew >= 1.001 && skew <= 1000))) throw new Error('--skew must be 0 (uniform) or a zipfian parameter in 1.001..1000');
  return { ...common, skew, rows: positiveInt(values.rows, 'rows', 1_000_000), modes };
}

/** `api_token` through pgcmek (COPY: deterministic envelopes), `plain_token` direct; unique btrees on both. */
async function load(direct: PgTarget, viaProxy: PgTarget, rows: number): Promise<void> {
  await withClient(direct, async (d) => {
    await d.query(`
      CREATE TABLE api_token (id int PRIMARY KEY, token_hash text NOT NULL, plain_hash text NOT NULL);
      CREATE TABLE plain_token (id int PRIMARY KEY, token_hash text NOT NULL);
    `);
    await d.query(`INSERT INTO plain_token SELECT g, (${BASE}::numeric + g * ${STEP})::text FROM generate_series(1, ${rows}) g`);
  });
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
  await withClient(direct, async (d) => {
    await d.query(`
      CREATE UNIQUE INDEX api_token_token_hash_key ON api_token (token_hash);
      CREATE UNIQUE INDEX api_token_plain_hash_key ON api_token (plain_hash);
      CREATE UNIQUE INDEX plain_token_token_hash_key ON plain_token (token_hash);
    `);
    await settleTables(d, ['api_token', 'plain_token']);
  });
}

/** Fails the run unless the column holds envelopes, lookups through pgcmek find their rows, and the plan is an index scan. */
async function verify(direct: PgTarget, viaProxy: PgTarget, rows: number): Promise<string> {
  const stored = await withClient(direct, (d) => d.query(`SELECT count(*)::int AS n FROM api_token WHERE starts_with(token_hash, 'cmek:v1:')`));
  if (stored.rows[0].n !== rows) throw new Error('sanity check failed: api_token.token_hash is not encrypted');
  return withClient(viaProxy, async (p) => {
    for (const i of [1, Math.ceil(rows / 2), rows]) {
      const a = await p.query('SELECT id FROM api_token WHERE token_hash = $1', [token(i)]);
      const b = await p.query(`SELECT id FROM api_token WHERE token_hash = '${token(i)}'`);
      if (a.rows[0]?.id !== i || b.rows[0]?.id !== i) throw new Error(`sanity check failed: lookup ${i} through pgcmek`);
    }
    const plan = await p.query('EXPLAIN SELECT id FROM api_token WHERE token_hash = $1', [token(7)]);
    const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
    if (!/Index (Only )?Scan|Bitmap Index Scan/.test(text)) throw new Error(`sanity check failed: no index scan:\n${text}`);
    return text;
  });
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

  const { cluster, pgcmek, pgbench, direct, viaProxy, postgresCpu, hugePages, pgcmekNode } = await startPgAndPgcmek({
    database: DATABASE,
    encryptedYaml: ['encrypted:', '  public.api_token:', '    token_hash: { searchable: true }'].join('\n'),
    node: o.node,
    hugePages: o.hugePages,
    log: say,
  });
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
  const dir = tempDir('pgcmek-bench-srch-');
  const cells = await runCells({
    ...o,
    cells: o.modes,
    targets,
    pgbench,
    pgbenchArgs: (mode, t) => ({ mode, args: ['-f', script(dir, mode, t, o.rows, o.skew)] }),
    postgresCpu,
    unit: UNIT,
    cellWidth: CELL_WIDTH,
    say,
  });

  const ratios = o.modes.map((mode) => {
    const { encrypted, headline } = headlineRatio(cells, mode, TARGET_RATIO, UNIT);
    return {
      mode,
      ...headline,
      encryptedOverPlainColumnOfEncryptedTable: ratio(encrypted.perSec, cellResult(cells, mode, 'plain col, enc table').perSec),
      encryptedViaPgcmekOverDirect: ratio(encrypted.perSec, cellResult(cells, mode, 'plaintext direct').perSec),
    };
  });

  const report = {
    benchmark: 'searchable',
    machine: { cpus: cpus().length, node: pgcmekNode, loadavg: loadavg() },
    settings: { rows: o.rows, distribution: o.skew === 0 ? 'uniform' : `zipfian(${o.skew})`, seconds: o.seconds, warmUpSeconds: o.warmUp, rounds: o.rounds, clients: o.clients, postgres: '18', postgresPages: hugePages.describe, pgcmek: 'child process (cli serve), workers 1, local KEK' },
    results: resultsJson(cells, 'mode', UNIT),
    ratios,
  };
  printReport(o.json, report, () =>
    resultTable({
      ...o,
      pages: hugePages.describe,
      node: pgcmekNode,
      about: `${o.rows} rows, ${report.settings.distribution} lookups`,
      cellTitle: 'mode',
      cellWidth: CELL_WIDTH,
      unit: UNIT,
      cells,
      ratios: ratios.map((r) => ({
        cell: r.mode,
        ratio: r,
        more: `   vs a plain column of the configured table ${fmt(r.encryptedOverPlainColumnOfEncryptedTable, 2)}   vs direct ${fmt(r.encryptedViaPgcmekOverDirect, 2)}`,
      })),
    }),
  );
}

await runMain(main);
