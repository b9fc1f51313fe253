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
// shared machine hits every target alike (bench/lib/cells.ts); every insert run
// starts on empty, checkpointed tables. Before measuring,
// the run checks the proxy really decrypts (through pgcmek: plaintext; direct:
// envelopes).
// Each cell also reports the CPU time per operation of pgcmek and of Postgres
// (the whole cluster, "postgres" in the table). Postgres spends more CPU per
// transaction through the proxy than direct, and more again on encrypted reads;
// on a 2-core machine that lowers the rate as much as the proxy's own CPU does.
//
//   node dist/bench/encryption.js [--seconds N (5)] [--warm-up N (5)] [--rounds N (3)] [--clients N (8)] [--json]
//                                 [--workloads read,insert,insert-simple] [--node PATH (the Node binary that runs pgcmek; default this one)]
import { cpus, loadavg } from 'node:os';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { COMMON_OPTIONS, commonArgs } from './lib/args.js';
import { runCells } from './lib/cells.js';
import { settleTables, withClient } from './lib/client.js';
import { startPgAndPgcmek } from './lib/pg-pgcmek.js';
import type { PgTarget, QueryMode } from './lib/pgbench.js';
import { runMain, tempDir } from './lib/proc.js';
import { cellResult, fmt, headlineRatio, printReport, resultsJson, resultTable, type Unit } from './lib/report.js';
import { ratio } from './lib/stats.js';

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

const UNIT: Unit = { many: 'ops', one: 'Op' };
/** The longest workload's name. */
const CELL_WIDTH = 13;
const TARGETS_RATIO: Record<Workload, number> = { read: 0.85, insert: 0.8, 'insert-simple': 0.8 };

function options() {
  const { values } = parseArgs({ options: { ...COMMON_OPTIONS, workloads: { type: 'string', default: WORKLOADS.join(',') } } });
  const common = commonArgs(
    values,
    'node dist/bench/encryption.js [--seconds N (5)] [--warm-up N (5)] [--rounds N (3)] [--clients N (8)] [--workloads read,insert,insert-simple] [--json] [--node PATH] [--huge-pages on|off (on)]',
  );
  const workloads = values.workloads.split(',').map((w) => w.trim()) as Workload[];
  for (const w of workloads) if (!WORKLOADS.includes(w)) throw new Error(`--workloads: unknown workload ${w}`);
  return { ...common, workloads };
}

/** Creates the tables and loads the rows: `enc` through pgcmek (so it holds envelopes), `plain` direct. */
async function load(direct: PgTarget, viaProxy: PgTarget): Promise<void> {
  await withClient(direct, async (d) => {
    await d.query(`
      CREATE TABLE enc (id int PRIMARY KEY, secret text NOT NULL);
      CREATE TABLE plain (id int PRIMARY KEY, secret text NOT NULL);
      CREATE TABLE enc_ins (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, secret text NOT NULL);
      CREATE TABLE plain_ins (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, secret text NOT NULL);
    `);
    await d.query(`INSERT INTO plain SELECT g, $1 || g FROM generate_series(1, ${ROWS}) g`, [SECRET.slice(0, -4)]);
  });
  await withClient(viaProxy, async (p) => {
    for (let start = 1; start <= ROWS; start += 100) {
      const ids = Array.from({ length: Math.min(100, ROWS - start + 1) }, (_, i) => start + i);
      const values = ids.map((_, i) => `($${2 * i + 1}::int, $${2 * i + 2})`).join(', ');
      await p.query(`INSERT INTO enc (id, secret) VALUES ${values}`, ids.flatMap((id) => [id, SECRET.slice(0, -4) + id]));
    }
  });
  await withClient(direct, (d) => settleTables(d, ['enc', 'plain']));
}

/** Fails the run unless pgcmek decrypts `enc` and the server stores only envelopes in it. */
async function verify(direct: PgTarget, viaProxy: PgTarget): Promise<void> {
  const stored = await withClient(direct, (d) => d.query(`SELECT count(*)::int AS n FROM enc WHERE secret LIKE 'cmek:v1:%'`));
  const read = await withClient(viaProxy, (p) => p.query('SELECT id, secret FROM enc WHERE id BETWEEN 1 AND 10 ORDER BY id'));
  const ok = stored.rows[0].n === ROWS && read.rows.length === 10 && read.rows.every((r) => r.secret === SECRET.slice(0, -4) + r.id);
  if (!ok) throw new Error('sanity check failed: pgcmek does not encrypt/decrypt enc.secret as configured');
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

/**
 * Empties the insert tables, then checkpoints: the previous run's dirty pages
 * (a direct run leaves the most) are written out now, not by the checkpointer
 * and the kernel's writeback during the next target's run.
 */
async function truncateInserts(direct: PgTarget): Promise<void> {
  await withClient(direct, async (d) => {
    await d.query('TRUNCATE enc_ins, plain_ins');
    await d.query('CHECKPOINT');
  });
}

async function main(): Promise<void> {
  const o = options();
  const say = (s: string): void => void process.stderr.write(s + '\n');
  say(`bench:encryption: ${o.seconds}s per run, ${o.rounds} round(s), ${o.clients} clients, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  const { cluster, pgcmek, pgbench, direct, viaProxy, postgresCpu, hugePages, pgcmekNode } = await startPgAndPgcmek({
    database: DATABASE,
    encryptedYaml: ['encrypted:', '  public.enc: [secret]', '  public.enc_ins: [secret]'].join('\n'),
    node: o.node,
    hugePages: o.hugePages,
    log: say,
  });
  say(`postgres 18 on ${cluster.port}, pgcmek (child process, pid ${pgcmek.pid}) on ${pgcmek.port}; loading ${ROWS} rows per table...`);
  await load(direct, viaProxy);
  await verify(direct, viaProxy);

  const targets: Target[] = [
    { name: 'encrypted via pgcmek', conn: viaProxy, table: { read: 'enc', insert: 'enc_ins', 'insert-simple': 'enc_ins' }, stat: pgcmek.stat },
    { name: 'plaintext via pgcmek', conn: viaProxy, table: { read: 'plain', insert: 'plain_ins', 'insert-simple': 'plain_ins' }, stat: pgcmek.stat },
    { name: 'plaintext direct', conn: direct, table: { read: 'plain', insert: 'plain_ins', 'insert-simple': 'plain_ins' } },
  ];
  const script = scripts(tempDir('pgcmek-bench-enc-'));
  const cells = await runCells({
    ...o,
    cells: o.workloads,
    targets,
    pgbench,
    pgbenchArgs: (w, t) => ({ mode: MODE[w], args: ['-f', script[w](t.table[w]), '-D', `s=${SECRET}`] }),
    prepare: async (w) => {
      if (w !== 'read') await truncateInserts(direct);
    },
    postgresCpu,
    unit: UNIT,
    cellWidth: CELL_WIDTH,
    say,
  });

  const ratios = o.workloads.map((w) => {
    const { encrypted, plaintext, headline } = headlineRatio(cells, w, TARGETS_RATIO[w], UNIT);
    const direct = cellResult(cells, w, 'plaintext direct');
    return {
      workload: w,
      ...headline,
      plaintextViaPgcmekOverDirect: ratio(plaintext.perSec, direct.perSec),
      encryptedViaPgcmekOverDirect: ratio(encrypted.perSec, direct.perSec),
      postgresCpuUsPerOpDirect: direct.postgresCpuUsPerOp,
    };
  });

  const report = {
    benchmark: 'encryption',
    machine: { cpus: cpus().length, node: pgcmekNode, loadavg: loadavg() },
    settings: {
      seconds: o.seconds,
      warmUpSeconds: o.warmUp,
      rounds: o.rounds,
      clients: o.clients,
      postgres: '18',
      postgresPages: hugePages.describe,
      pgcmek: 'child process (cli serve), workers 1, local KEK, default DEK policy',
      read: `pgbench -M prepared: SELECT id, secret … WHERE id BETWEEN :a AND :a + 9 (10 rows × 1 column of ${SECRET.length} chars)`,
      insert: `pgbench -M prepared: INSERT INTO … (secret) VALUES (:s) (1 parameter of ${SECRET.length} chars)`,
      insertSimple: `pgbench -M simple: INSERT INTO … (secret) VALUES ('…-:n') (a literal of ${SIMPLE_PREFIX.length + 1}–${SIMPLE_PREFIX.length + 10} chars, new per execution)`,
    },
    results: resultsJson(cells, 'workload', UNIT),
    ratios,
  };
  printReport(o.json, report, () =>
    resultTable({
      ...o,
      pages: hugePages.describe,
      node: pgcmekNode,
      about: '',
      cellTitle: 'workload',
      cellWidth: CELL_WIDTH,
      unit: UNIT,
      cells,
      ratios: ratios.map((r) => ({
        cell: r.workload,
        ratio: r,
        more: `   plaintext via pgcmek/direct ${fmt(r.plaintextViaPgcmekOverDirect, 2)}   encrypted via pgcmek/direct ${fmt(r.encryptedViaPgcmekOverDirect, 2)}`,
      })),
    }),
  );
}

await runMain(main);
