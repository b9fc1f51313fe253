// Remote KEK backends through the keyring: `node dist/bench/kek.js` after a build.
// Each backend talks to its in-process fake (test/kek/fake-vault.ts,
// fake-kms.ts) with a simulated round trip (BENCH_RTT_MS, default 2 ms) over
// real HTTP: the Vault client on node:http, KMS through the AWS SDK (SigV4).
// For each backend, DEK cache off (a DEK per value, an unwrap per value) and on
// (the default policy: DEK reuse up to 300 s / 100 000 values, 10 000 cached
// DEKs), it writes BENCH_VALUES values and reads them back with a keyring that
// did not write them (cold cache), with 1 and 64 values in flight, and prints
// values/s and remote calls per 10 000 values. The fakes share this process's
// CPU, so absolute numbers are a floor; the call counts are exact.
import type { DekPolicy, KekConfig } from '../src/config/types.js';
import { createAwsKmsBackend } from '../src/crypto/kek/aws-kms.js';
import type { RemoteMetrics } from '../src/crypto/kek/retry.js';
import type { KekBackend } from '../src/crypto/kek/types.js';
import { createVaultBackend } from '../src/crypto/kek/vault.js';
import { Keyring } from '../src/crypto/keyring.js';
import { createLogger } from '../src/log.js';
import { FakeKms } from '../test/kek/fake-kms.js';
import { FakeVault } from '../test/kek/fake-vault.js';

const RTT_MS = Number(process.env.BENCH_RTT_MS ?? 2);
const VALUES = Number(process.env.BENCH_VALUES ?? 10_000);
const PLAINTEXT = 'pan=4111111111111111;exp=12/29;cvv=123;x'; // 40 bytes, as in bench/crypto.ts
const log = createLogger('silent');

const OFF: DekPolicy = { maxAgeSeconds: 0, maxUses: 1, cacheSize: 0, cacheTtlSeconds: 0 };
const ON: DekPolicy = { maxAgeSeconds: 300, maxUses: 100_000, cacheSize: 10_000, cacheTtlSeconds: 3600 };

type Remote = KekBackend & { metrics(): RemoteMetrics; close(): Promise<void> };

interface Rig {
  name: string;
  make(dek: DekPolicy): Promise<Remote>;
  stop(): Promise<void>;
}

async function vaultRig(): Promise<Rig> {
  const vault = await new FakeVault({ latencyMs: RTT_MS }).start();
  vault.createKey('pgcmek');
  return {
    name: 'vault',
    async make(dek) {
      const kek: KekConfig = { backend: 'vault', local: { previous: [] }, vault: { addr: vault.url, token: vault.rootToken, keyName: 'pgcmek', mount: 'transit' }, dek };
      const b = await createVaultBackend(kek, { log, refreshSeconds: 0 });
      await b.init();
      return b;
    },
    stop: () => vault.stop(),
  };
}

async function kmsRig(): Promise<Rig> {
  const kms = await new FakeKms({ latencyMs: RTT_MS }).start();
  kms.credentials.set('AKIABENCH', 'bench-secret');
  kms.createKey({ alias: 'alias/pgcmek' });
  return {
    name: 'aws_kms',
    async make(dek) {
      const kek: KekConfig = { backend: 'aws_kms', local: { previous: [] }, awsKms: { keyId: 'alias/pgcmek', region: 'us-east-1', endpoint: kms.url }, dek };
      const b = await createAwsKmsBackend(kek, { log, client: { credentials: { accessKeyId: 'AKIABENCH', secretAccessKey: 'bench-secret' } } });
      await b.init();
      return b;
    },
    stop: () => kms.stop(),
  };
}

/** Runs fn(0..n-1) with `width` calls in flight; returns seconds taken. */
async function pool(n: number, width: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
  return Number(process.hrtime.bigint() - start) / 1e9;
}

function totals(m: RemoteMetrics): { calls: number; batched: number } {
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
  return { calls: sum(m.calls), batched: sum(m.batchedItems) };
}

interface Row {
  backend: string;
  cache: string;
  op: string;
  width: number;
  values: number;
  perSecond: number;
  callsPer10k: number;
  note: string;
}

const rows: Row[] = [];

async function run(rig: Rig, cache: 'off' | 'on', width: number): Promise<void> {
  const policy = cache === 'on' ? ON : OFF;
  // Sequential rows with a DEK per value are bound by the round trip: fewer values say as much.
  const n = width === 1 && cache === 'off' ? Math.min(VALUES, 400) : VALUES;
  const backend = await rig.make(policy);
  try {
    const writer = new Keyring({ primary: backend, readable: [backend], dek: policy });
    const values: string[] = new Array(n);
    const m0 = totals(backend.metrics());
    const encSeconds = await pool(n, width, async (i) => {
      values[i] = await writer.encrypt(PLAINTEXT);
    });
    const m1 = totals(backend.metrics());
    // A reader that did not write them: its cache starts cold.
    const reader = new Keyring({ primary: backend, readable: [backend], dek: policy });
    const decSeconds = await pool(n, width, async (i) => {
      if ((await reader.decrypt(values[i]!)) !== PLAINTEXT) throw new Error('bench: round trip mismatch');
    });
    const m2 = totals(backend.metrics());
    const row = (op: string, seconds: number, calls: number, batched: number): Row => ({
      backend: rig.name,
      cache,
      op,
      width,
      values: n,
      perSecond: n / seconds,
      callsPer10k: (calls * 10_000) / n,
      note: batched > 0 ? `${((batched * 10_000) / n).toFixed(0)} DEKs/10k in batch_input requests` : '',
    });
    rows.push(row('encrypt', encSeconds, m1.calls - m0.calls, m1.batched - m0.batched));
    rows.push(row('decrypt', decSeconds, m2.calls - m1.calls, m2.batched - m1.batched));
    await Promise.all([writer.close(), reader.close()]); // each closes the backend too (idempotent)
  } finally {
    await backend.close();
  }
}

for (const makeRig of [vaultRig, kmsRig]) {
  const rig = await makeRig();
  try {
    for (const cache of ['off', 'on'] as const) for (const width of [1, 64]) await run(rig, cache, width);
  } finally {
    await rig.stop();
  }
}

const fmt = (n: number) => (n > 0 && n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString('en-US'));
const head = ['backend', 'DEK cache', 'op', 'in flight', 'values', 'values/s', 'remote calls/10k values', 'note'];
const table = rows.map((r) => [r.backend, r.cache, r.op, String(r.width), fmt(r.values), fmt(r.perSecond), fmt(r.callsPer10k), r.note]);
const widths = head.map((h, i) => Math.max(h.length, ...table.map((t) => t[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => (i >= 3 && i <= 6 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
process.stdout.write(
  [
    `pgcmek KEK backends through the keyring: ${PLAINTEXT.length}-byte values, fakes in process with a ${RTT_MS} ms simulated round trip, node ${process.version}`,
    `cache off = a DEK per value, no read cache; on = reuse 300 s / 100 000 values, 10 000 cached DEKs`,
    '',
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...table.map(line),
  ].join('\n') + '\n',
);
