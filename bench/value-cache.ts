// The read path's per-row cost when the decrypted-value cache hits, warm and
// cold. bench:crypto's "DataRow rewrite, value cache hit" reads 1,024 rows in a
// loop, so every cache structure stays in the CPU caches. In the running proxy
// Postgres and the clients run between two reads and evict them; the DataRow
// itself has just arrived (hot). This bench keeps 8,000 rows cached, copies 10
// random rows into a hot buffer (one 10-row result), walks 4 MB of scratch
// memory to evict the caches, then times the 10 rewrites.
// Run: npx tsc -p tsconfig.json && node dist/bench/value-cache.js [batches]
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { LocalKekBackend } from '../src/crypto/kek/local.js';
import { Keyring } from '../src/crypto/keyring.js';
import { decryptDataRow, type FieldPlan, type RowPlan } from '../src/encryption/rows.js';
import { ValueCodec } from '../src/encryption/values.js';
import { encodeDataRow } from '../src/protocol/backend/data-row.js';

const ROWS = 8_000;
const PER_BATCH = 10;
const SCRATCH = 4 << 20;

export function runValueCacheBench(batches = 2_000): { warmNs: number; coldNs: number } {
  const dek = { maxAgeSeconds: 300, maxUses: 100_000, cacheSize: 10_000, cacheTtlSeconds: 3_600 };
  const keyring = new Keyring({ primary: LocalKekBackend.fromKeys([randomBytes(32)]), readable: [], dek });
  const pt = Buffer.from('whsec_0123456789abcdef0123456789abcdef');
  const rows = Array.from({ length: ROWS }, (_, i) => encodeDataRow([Buffer.from(String(i)), keyring.tryEncryptSync(pt)!]));
  const codec = new ValueCodec(keyring, { size: 10_000, ttlMs: 3_600_000 });
  const policy = { column: 'secret', searchable: false, onDecryptError: 'error' as const, encryptEmpty: false };
  const field: FieldPlan = { index: 1, policy, shape: 'text', binary: false, label: 'public.t.secret', table: 'public.t', column: 'secret' };
  const plan: RowPlan = { fields: [field], unmapped: [], visits: [{ index: 1, field }] };
  const noop = () => {};
  // Fills the cache and lets the JIT settle.
  for (let k = 0; k < 300_000; k++) decryptDataRow(rows[k % ROWS]!, plan, codec, noop);

  const hot = Buffer.alloc(PER_BATCH * 512);
  const scratch = new Uint8Array(SCRATCH);
  let sink = 0;
  const time = (evict: boolean): number => {
    let ns = 0n;
    for (let b = 0; b < batches; b++) {
      const frames = Array.from({ length: PER_BATCH }, (_, j) => {
        const r = rows[(Math.random() * ROWS) | 0]!;
        const f = hot.subarray(j * 512, j * 512 + r.length);
        f.set(r);
        return f;
      });
      if (evict) for (let k = 0; k < SCRATCH; k += 64) scratch[k]!++;
      const t0 = process.hrtime.bigint();
      for (const f of frames) {
        const out = decryptDataRow(f, plan, codec, noop);
        sink += out instanceof Buffer ? out.length : 0;
      }
      ns += process.hrtime.bigint() - t0;
    }
    return Number(ns) / (batches * PER_BATCH);
  };
  const warmNs = time(false);
  const coldNs = time(true);
  if (sink === 0) throw new Error('nothing was decrypted');
  return { warmNs, coldNs };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { warmNs, coldNs } = runValueCacheBench(Number(process.argv[2] ?? 2_000));
  console.log(`DataRow rewrite, value cache hit, ${ROWS} cached rows, random order (Node ${process.version})`);
  console.log(`  warm (caches kept between reads)        ${warmNs.toFixed(0).padStart(6)} ns/row`);
  console.log(`  cold (4 MB walked before each 10 rows)  ${coldNs.toFixed(0).padStart(6)} ns/row`);
}
