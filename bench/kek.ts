// Remote KEK backends (Vault Transit, AWS KMS): `npm run bench:kek`, or after a build
//   node dist/bench/kek.js [--seconds N (5)] [--clients N (8)] [--only keyring|proxy]
// Each backend talks to its in-process fake (test/kek/fake-vault.ts, fake-kms.ts)
// with a simulated round trip (BENCH_RTT_MS, default 2 ms) over real HTTP: the
// Vault client on node:http, KMS through the AWS SDK (SigV4). Two parts:
//  - keyring: Keyring.encrypt/decrypt directly, 1 and 64 values in flight, DEK
//    cache off (a DEK per value, no read cache) and on (reuse 300 s / 100 000
//    values, 10 000 cached DEKs); reads use a keyring that did not write the
//    values (cold cache). At most BENCH_VALUES (10 000) values or --seconds per cell.
//  - proxy: Postgres 18 (startCluster) behind pgcmek in this process with the
//    backend as primary, driven by pgbench -M prepared (--clients, 2 threads) for
//    --seconds per cell: encrypt = single-row INSERTs of one encrypted value,
//    decrypt = SELECTs of 10 rows x 1 encrypted column. DEK cache on = max_uses
//    100 000, max_age 300 s, cache_size 10 000; off = max_uses 1, cache_size 0;
//    value_cache_size 0 in both, so every value read goes to the keyring.
// Both print values/s and remote calls per 10 000 values (the backend's
// metrics()). The fakes and the proxy share this process's CPU, so absolute
// numbers are a floor; the call counts are exact. Everything started is stopped
// on exit, error or Ctrl-C (bench/lib/proc.ts).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultConfig } from '../src/config/load.js';
import type { Config, DekPolicy, KekConfig } from '../src/config/types.js';
import { createAwsKmsBackend } from '../src/crypto/kek/aws-kms.js';
import type { RemoteMetrics } from '../src/crypto/kek/retry.js';
import type { KekBackend } from '../src/crypto/kek/types.js';
import { createVaultBackend } from '../src/crypto/kek/vault.js';
import { Keyring } from '../src/crypto/keyring.js';
import { startCluster, type Cluster } from '../src/dev/cluster.js';
import { createProxyDeps } from '../src/encryption/deps.js';
import { createLogger, setLogger } from '../src/log.js';
import { startProxy } from '../src/proxy/server.js';
import { FakeKms } from '../test/kek/fake-kms.js';
import { FakeVault } from '../test/kek/fake-vault.js';
import { withClient } from './lib/client.js';
import { runPgbench, type PgTarget } from './lib/pgbench.js';
import { onCleanup, runMain } from './lib/proc.js';

const RTT_MS = Number(process.env.BENCH_RTT_MS ?? 2);
const VALUES = Number(process.env.BENCH_VALUES ?? 10_000);
const PLAINTEXT = 'pan=4111111111111111;exp=12/29;cvv=123;x'; // 40 bytes, as in bench/crypto.ts
const ROWS = 1_000; // rows the proxy's decrypt workload reads from
const DATABASE = 'bench_kek';
const KMS_CREDENTIALS = { accessKeyId: 'AKIABENCH', secretAccessKey: 'bench-secret' };
const log = createLogger('silent');
setLogger(log); // backends built from a config log through the root logger

const OFF: DekPolicy = { maxAgeSeconds: 0, maxUses: 1, cacheSize: 0, cacheTtlSeconds: 0 };
const ON: DekPolicy = { maxAgeSeconds: 300, maxUses: 100_000, cacheSize: 10_000, cacheTtlSeconds: 3600 };
const PROXY_DEK = {
  on: { maxAgeSeconds: 300, maxUses: 100_000, cacheSize: 10_000, cacheTtlSeconds: 3600, valueCacheSize: 0 },
  off: { maxAgeSeconds: 300, maxUses: 1, cacheSize: 0, cacheTtlSeconds: 3600, valueCacheSize: 0 },
} satisfies Record<string, DekPolicy>;

type Remote = KekBackend & { metrics(): RemoteMetrics; close(): Promise<void> };
type BackendName = 'vault' | 'aws_kms';

interface Row {
  part: 'keyring' | 'proxy';
  backend: string;
  cache: 'off' | 'on';
  op: 'encrypt' | 'decrypt';
  width: number;
  values: number;
  perSecond: number;
  p50Ms?: number;
  callsPer10k: number;
  note: string;
}

function options() {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      clients: { type: 'string', default: '8' },
      only: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write('usage: node dist/bench/kek.js [--seconds N (5)] [--clients N (8)] [--only keyring|proxy]\n');
    process.exit(0);
  }
  const int = (v: string, name: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
    return n;
  };
  if (values.only !== undefined && values.only !== 'keyring' && values.only !== 'proxy') throw new Error('--only must be keyring or proxy');
  return { seconds: int(values.seconds, 'seconds'), clients: int(values.clients, 'clients'), only: values.only as 'keyring' | 'proxy' | undefined };
}

/** The backends' settings against the fakes (one place for both parts). */
function kekConfig(backend: BackendName, fakes: { vault: FakeVault; kms: FakeKms }, dek: DekPolicy): KekConfig {
  return backend === 'vault'
    ? { backend, local: { previous: [] }, vault: { addr: fakes.vault.url, token: fakes.vault.rootToken, keyName: 'pgcmek', mount: 'transit' }, dek }
    : { backend, local: { previous: [] }, awsKms: { keyId: 'alias/pgcmek', region: 'us-east-1', endpoint: fakes.kms.url }, dek };
}

async function startFakes(): Promise<{ vault: FakeVault; kms: FakeKms; stop(): Promise<void> }> {
  const vault = await new FakeVault({ latencyMs: RTT_MS }).start();
  vault.createKey('pgcmek');
  const kms = await new FakeKms({ latencyMs: RTT_MS }).start();
  kms.credentials.set(KMS_CREDENTIALS.accessKeyId, KMS_CREDENTIALS.secretAccessKey);
  kms.createKey({ alias: 'alias/pgcmek' });
  return { vault, kms, stop: async () => void (await Promise.all([vault.stop(), kms.stop()])) };
}

function totals(m: RemoteMetrics): { calls: number; batched: number } {
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
  return { calls: sum(m.calls), batched: sum(m.batchedItems) };
}

function row(base: Omit<Row, 'perSecond' | 'callsPer10k' | 'note'>, seconds: number, d: { calls: number; batched: number }): Row {
  return {
    ...base,
    perSecond: base.values / seconds,
    callsPer10k: (d.calls * 10_000) / base.values,
    note: d.batched > 0 ? `${((d.batched * 10_000) / base.values).toFixed(0)} DEKs/10k in batch_input requests` : '',
  };
}

const delta = (a: { calls: number; batched: number }, b: { calls: number; batched: number }) => ({ calls: b.calls - a.calls, batched: b.batched - a.batched });

// ---- keyring part -----------------------------------------------------------------

/** Runs fn(0..n-1) with `width` calls in flight until n are done or the deadline passes; returns how many and how long. */
async function pool(n: number, width: number, seconds: number, fn: (i: number) => Promise<unknown>): Promise<{ done: number; seconds: number }> {
  let next = 0;
  let done = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(seconds * 1e9);
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n && process.hrtime.bigint() < deadline) {
        await fn(next++);
        done++;
      }
    }),
  );
  return { done, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
}

async function keyringCell(backend: BackendName, fakes: { vault: FakeVault; kms: FakeKms }, cache: 'off' | 'on', width: number, seconds: number): Promise<Row[]> {
  const policy = cache === 'on' ? ON : OFF;
  const kek = kekConfig(backend, fakes, policy);
  const b: Remote =
    backend === 'vault'
      ? await createVaultBackend(kek, { log, refreshSeconds: 0 })
      : await createAwsKmsBackend(kek, { log, client: { credentials: KMS_CREDENTIALS } });
  try {
    await b.init();
    const writer = new Keyring({ primary: b, readable: [b], dek: policy });
    const values: string[] = new Array(VALUES);
    const m0 = totals(b.metrics());
    const enc = await pool(VALUES, width, seconds, async (i) => {
      values[i] = await writer.encrypt(PLAINTEXT);
    });
    const m1 = totals(b.metrics());
    // A reader that did not write them: its cache starts cold.
    const reader = new Keyring({ primary: b, readable: [b], dek: policy });
    const dec = await pool(enc.done, width, seconds, async (i) => {
      if ((await reader.decrypt(values[i]!)) !== PLAINTEXT) throw new Error('bench: round trip mismatch');
    });
    const m2 = totals(b.metrics());
    await Promise.all([writer.close(), reader.close()]); // each closes the backend too (idempotent)
    const base = { part: 'keyring', backend, cache, width } as const;
    return [row({ ...base, op: 'encrypt', values: enc.done }, enc.seconds, delta(m0, m1)), row({ ...base, op: 'decrypt', values: dec.done }, dec.seconds, delta(m1, m2))];
  } finally {
    await b.close();
  }
}

async function keyringPart(seconds: number): Promise<Row[]> {
  const fakes = await startFakes();
  onCleanup(() => fakes.stop());
  const rows: Row[] = [];
  for (const backend of ['vault', 'aws_kms'] as const) {
    for (const cache of ['off', 'on'] as const) for (const width of [1, 64]) rows.push(...(await keyringCell(backend, fakes, cache, width, seconds)));
  }
  return rows;
}

// ---- proxy part -------------------------------------------------------------------

const tablePolicy = (name: string) => ({
  schema: 'public',
  table: name,
  columns: [{ column: 'secret', searchable: false, onDecryptError: 'error' as const, encryptEmpty: false }],
});

/** pgcmek in this process with `backend` as primary; its backend's metrics() stay reachable through the keyring. */
async function startRemotePgcmek(cluster: Cluster, kek: KekConfig, tables: string[]) {
  const config: Config = {
    ...defaultConfig(),
    source: 'bench/kek.ts',
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { host: cluster.host, port: cluster.port, tls: 'disable' },
    kek,
    encrypted: tables.map(tablePolicy),
    log: { level: 'silent' },
  };
  const keyring = await Keyring.fromConfig(kek);
  const { deps } = await createProxyDeps(config, log, keyring);
  const server = await startProxy(config, { logger: log, keyring, ...deps });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await server.close(0);
    await keyring.close();
  };
  onCleanup(stop);
  const primary = keyring.backends().primary as Remote;
  return { port: server.port, keyring, metrics: () => totals(primary.metrics()), stop };
}

async function proxyPart(o: { seconds: number; clients: number }): Promise<Row[]> {
  const cluster = await startCluster({ flavour: '18', settings: { max_connections: 100 } });
  onCleanup(() => cluster.stop());
  await withClient({ host: cluster.host, port: cluster.port, user: cluster.user, password: cluster.password, database: 'postgres' }, (c) => c.query(`CREATE DATABASE ${DATABASE}`));
  const fakes = await startFakes();
  onCleanup(() => fakes.stop());
  // The AWS SDK inside the proxy's backend uses the standard chain: the environment here.
  process.env.AWS_ACCESS_KEY_ID = KMS_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = KMS_CREDENTIALS.secretAccessKey;
  delete process.env.AWS_SESSION_TOKEN;
  const dir = mkdtempSync(join(tmpdir(), 'pgcmek-bench-kek-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const target = (port: number): PgTarget => ({ host: '127.0.0.1', port, user: cluster.user, password: cluster.password, database: DATABASE });
  const direct = target(cluster.port);

  const rows: Row[] = [];
  for (const backend of ['vault', 'aws_kms'] as const) {
    for (const cache of ['off', 'on'] as const) {
      const [rt, it] = [`r_${backend}_${cache}`, `i_${backend}_${cache}`];
      await withClient(direct, (c) => c.query(`CREATE TABLE ${rt} (id int PRIMARY KEY, secret text NOT NULL); CREATE TABLE ${it} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, secret text NOT NULL)`));
      const proxy = await startRemotePgcmek(cluster, kekConfig(backend, fakes, PROXY_DEK[cache]), [rt, it]);
      const via = target(proxy.port);
      process.stderr.write(`proxy: ${backend}, DEK cache ${cache}: loading ${ROWS} rows through pgcmek...\n`);
      await withClient(via, async (c) => {
        for (let start = 1; start <= ROWS; start += 100) {
          const ids = Array.from({ length: 100 }, (_, i) => start + i);
          await c.query(`INSERT INTO ${rt} (id, secret) VALUES ${ids.map((_, i) => `($${2 * i + 1}::int, $${2 * i + 2})`).join(', ')}`, ids.flatMap((id) => [id, PLAINTEXT]));
        }
      });
      // The run is only worth reporting if the values really are under this backend and read back.
      const stored = await withClient(direct, (c) => c.query<{ secret: string }>(`SELECT secret FROM ${rt} ORDER BY id LIMIT 10`));
      const read = await withClient(via, (c) => c.query<{ secret: string }>(`SELECT secret FROM ${rt} ORDER BY id LIMIT 10`));
      if (!stored.rows.every((r) => proxy.keyring.describe(r.secret).backend === backend) || !read.rows.every((r) => r.secret === PLAINTEXT)) {
        throw new Error(`sanity check failed: ${rt} is not encrypted by ${backend} through pgcmek`);
      }
      const scripts = {
        encrypt: file(dir, `insert-${it}`, `INSERT INTO ${it} (secret) VALUES (:s);\n`),
        decrypt: file(dir, `read-${rt}`, `\\set a random(1, ${ROWS - 9})\nSELECT id, secret FROM ${rt} WHERE id BETWEEN :a AND :a + 9;\n`),
      };
      const bench = (op: 'encrypt' | 'decrypt', seconds: number) =>
        runPgbench(join(cluster.clientBin, 'pgbench'), via, {
          mode: 'prepared',
          clients: o.clients,
          threads: 2,
          seconds,
          selectOnly: false,
          extraArgs: ['-n', '-f', scripts[op], '-D', `s=${PLAINTEXT}`],
        });
      for (const op of ['encrypt', 'decrypt'] as const) {
        const warm = await bench(op, 1); // JIT, connections, shared_buffers; not measured
        if (!warm.ok) throw new Error(`warm-up ${op} via ${backend} failed: ${warm.stderr.slice(-2000)}`);
        const m0 = proxy.metrics();
        const r = await bench(op, o.seconds);
        const m1 = proxy.metrics();
        if (!r.ok) throw new Error(`${op} via ${backend} failed (exit ${r.exit}): ${r.stderr.slice(-2000)}`);
        const values = r.transactions * (op === 'decrypt' ? 10 : 1);
        // pgbench's tps excludes connection set-up: its transactions over the time they took.
        const x = row({ part: 'proxy', backend, cache, op, width: o.clients, values, ...(r.latencyMs && { p50Ms: r.latencyMs.p50 }) }, r.transactions / r.tps, delta(m0, m1));
        rows.push(x);
        process.stderr.write(`  ${op}: ${fmt(x.perSecond)} values/s, ${fmt(x.callsPer10k)} remote calls/10k values\n`);
      }
      await proxy.stop();
    }
  }
  return rows;
}

function file(dir: string, name: string, text: string): string {
  const path = join(dir, `${name}.sql`);
  writeFileSync(path, text);
  return path;
}

// ---- report -------------------------------------------------------------------------

const fmt = (n: number) => (n > 0 && n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString('en-US'));

function table(rows: Row[], widthHead: string): string[] {
  const head = ['backend', 'DEK cache', 'op', widthHead, 'values', 'values/s', 'p50 ms', 'remote calls/10k values', 'note'];
  const cells = rows.map((r) => [r.backend, r.cache, r.op, String(r.width), fmt(r.values), fmt(r.perSecond), r.p50Ms === undefined ? '-' : r.p50Ms.toFixed(2), fmt(r.callsPer10k), r.note]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((t) => t[i]!.length)));
  const line = (c: string[]) => c.map((s, i) => (i >= 3 && i <= 7 ? s.padStart(widths[i]!) : s.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)];
}

await runMain(async () => {
  const o = options();
  process.stderr.write(`bench:kek: ${o.seconds}s per cell, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  const out: string[] = [];
  if (o.only !== 'proxy') {
    const rows = await keyringPart(o.seconds);
    out.push(
      `pgcmek KEK backends through the keyring: ${PLAINTEXT.length}-byte values, fakes in process with a ${RTT_MS} ms simulated round trip, node ${process.version}`,
      `cache off = a DEK per value, no read cache; on = reuse 300 s / 100 000 values, 10 000 cached DEKs; at most ${VALUES} values or ${o.seconds} s per cell`,
      '',
      ...table(rows, 'in flight'),
      '',
    );
  }
  if (o.only !== 'keyring') {
    const rows = await proxyPart(o);
    out.push(
      `pgcmek KEK backends through the proxy: Postgres 18, pgcmek in process, pgbench -M prepared -c ${o.clients} -j 2 for ${o.seconds} s per cell, ${PLAINTEXT.length}-byte values, ${RTT_MS} ms simulated round trip`,
      `encrypt = single-row INSERT of 1 encrypted value; decrypt = SELECT of 10 rows x 1 encrypted column; value_cache_size 0`,
      `cache off = max_uses 1, cache_size 0; on = max_uses 100 000, max_age 300 s, cache_size 10 000`,
      '',
      ...table(rows, 'clients'),
      '',
    );
  }
  process.stdout.write(out.join('\n'));
});
