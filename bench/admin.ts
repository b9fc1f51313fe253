// Admin throughput on a real Postgres: `npm run bench:admin`
// (= `npm run build && node dist/bench/admin.js`).
// 1M rows (BENCH_ADMIN_ROWS) of 40-byte plaintext tokens; measures
//   backfill  CMEK ENCRYPT EXISTING  rows/s
//   rotation  CMEK ROTATE KEK        rows/s (KEK A -> KEK B, Fernet tokens untouched)
//   status    one scan of the encrypted column
// and this process's RSS, sampled every 250 ms during each run: flat means the
// table is streamed in batches, never loaded. Starts its own Postgres 18
// (src/dev/cluster.ts) unless BENCH_DATABASE_URL names one.
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import pg from 'pg';
import { executeAdminCommand, type AdminResult } from '../src/admin/executor.js';
import { parseAdminCommand } from '../src/admin/parse.js';
import { AdminError } from '../src/admin/errors.js';
import { defaultConfig } from '../src/config/load.js';
import type { Config } from '../src/config/types.js';
import { LocalKekBackend } from '../src/crypto/kek/local.js';
import { Keyring } from '../src/crypto/keyring.js';
import { startCluster, type Cluster } from '../src/dev/cluster.js';
import { createLogger, setLogger } from '../src/log.js';
import { onCleanup, runMain } from './lib/proc.js';

const ROWS = Number(process.env.BENCH_ADMIN_ROWS ?? 1_000_000);
const BATCH = Number(process.env.BENCH_ADMIN_BATCH ?? 500);
const DEK = { maxAgeSeconds: 300, maxUses: 100_000, cacheSize: 1000, cacheTtlSeconds: 0 };
const MB = 1024 * 1024;

function rssSampler(): { stop(): { min: number; max: number } } {
  let min = Infinity;
  let max = 0;
  const sample = () => {
    const r = process.memoryUsage.rss();
    min = Math.min(min, r);
    max = Math.max(max, r);
  };
  sample();
  const t = setInterval(sample, 250);
  return {
    stop() {
      clearInterval(t);
      sample();
      return { min, max };
    },
  };
}

async function timed(label: string, text: string, config: Config, keyring: Keyring, db: pg.Client, writer: pg.Client) {
  const cmd = parseAdminCommand(text);
  if (cmd instanceof AdminError) throw cmd;
  const rss = rssSampler();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const res: AdminResult = await executeAdminCommand(cmd, {
    db,
    writer,
    config,
    keyring,
    principal: { kind: 'operator', name: 'bench' },
    onProgress: (done, total, rate) => process.stderr.write(`\r  ${label}: ${done}/${total} ${Math.round(rate)} rows/s   `),
  });
  const secs = (performance.now() - t0) / 1000;
  const used = process.cpuUsage(cpu0);
  const cpu = (used.user + used.system) / 1e6;
  const mem = rss.stop();
  process.stderr.write('\n');
  return { res, secs, cpu, mem };
}

async function load(db: pg.Client): Promise<void> {
  await db.query(`DROP TABLE IF EXISTS bench_tokens`);
  await db.query(`CREATE TABLE bench_tokens (id bigint PRIMARY KEY, token text)`);
  const t0 = performance.now();
  // 40-byte tokens, different per row.
  await db.query(`INSERT INTO bench_tokens SELECT g, rpad('tok_' || g || '_' || md5(g::text), 40, 'x') FROM generate_series(1, $1::int) g`, [ROWS]);
  await db.query(`VACUUM ANALYZE bench_tokens`);
  process.stderr.write(`loaded ${ROWS} rows in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}

async function main(): Promise<void> {
  let url = process.env.BENCH_DATABASE_URL;
  if (!url) {
    const cluster: Cluster = await startCluster({ flavour: '18' });
    onCleanup(() => cluster.stop());
    url = cluster.url();
  }
  setLogger(createLogger('warn'));
  const db = new pg.Client(url);
  const writer = new pg.Client(url);
  await db.connect();
  await writer.connect();
  onCleanup(() => Promise.allSettled([db.end(), writer.end()]));
  await load(db);

  const kekA = randomBytes(32);
  const kekB = randomBytes(32);
  const column = { column: 'token', searchable: false, onDecryptError: 'error' as const, encryptEmpty: false };
  const config: Config = { ...defaultConfig(), encrypted: [{ schema: 'public', table: 'bench_tokens', columns: [column] }] };
  const ringA = new Keyring({ primary: LocalKekBackend.fromKeys([kekA]), readable: [], dek: DEK });
  // After the rotation: B wraps, A stays readable.
  const ringB = new Keyring({ primary: LocalKekBackend.fromKeys([kekB, kekA]), readable: [], dek: DEK });
  onCleanup(() => Promise.allSettled([ringA.close(), ringB.close()]));

  const fill = await timed('backfill', `CMEK ENCRYPT EXISTING bench_tokens.token BATCH ${BATCH}`, config, ringA, db, writer);
  const rot = await timed('rotation', `CMEK ROTATE KEK bench_tokens.token BATCH ${BATCH}`, config, ringB, db, writer);
  const again = await timed('rotation re-run', `CMEK ROTATE KEK bench_tokens.token BATCH ${BATCH}`, config, ringB, db, writer);
  const st = await timed('status', `CMEK STATUS bench_tokens.token`, config, ringB, db, writer);

  const n = (r: AdminResult, c: string) => Number(r.rows[0][r.columns.indexOf(c)]);
  // cpu: this process's own CPU time (encryption, protocol); the rest of the wall time is Postgres.
  const line = (label: string, rows: number, x: { secs: number; cpu: number; mem: { min: number; max: number } }) =>
    `${label.padEnd(26)} ${String(rows).padStart(8)} rows ${x.secs.toFixed(1).padStart(6)} s ${String(Math.round(rows / x.secs)).padStart(8)} rows/s` +
    `  node CPU ${x.cpu.toFixed(1).padStart(5)} s  RSS ${(x.mem.min / MB).toFixed(0)}-${(x.mem.max / MB).toFixed(0)} MB`;
  console.log(`pgcmek admin bench: ${ROWS} rows of 40-byte tokens, batch ${BATCH}, Node ${process.version}, load average ${loadavg()[0].toFixed(1)}`);
  console.log(line('backfill (encrypted)', n(fill.res, 'encrypted'), fill));
  console.log(line('rotation (re-wrapped)', n(rot.res, 'rewrapped'), rot));
  console.log(line('rotation re-run (scanned)', ROWS, again) + `   (re-wrapped ${n(again.res, 'rewrapped')})`);
  console.log(line('status (scanned)', n(st.res, 'rows'), st));
  console.log(`status: ${st.res.rows[0].join(' | ')}`);
  console.log(`peak RSS of the process: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
  await db.query(`DROP TABLE bench_tokens`);
}

await runMain(main);
