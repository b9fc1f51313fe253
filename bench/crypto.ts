// Crypto core throughput on one core: `npm run bench:crypto`.
// Every row works on a 40-byte plaintext (a card number with some context, a
// typical secret column). The npm `fernet` package (crypto-js) is the peer for
// the raw Fernet rows. Envelope rows use the local KEK backend, in process.
// The last rows are the proxy's per-value hot paths (DataRow and Bind rewrites)
// without sockets: what `npm run bench:encryption` pays per value, warm caches.
// Rows run on the native addon when it is built (src/crypto/native.ts), else on
// the JavaScript path; the header says which.
import { createHmac, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { decrypt, encrypt, FernetKey } from '../src/crypto/fernet.js';
import { LocalKekBackend } from '../src/crypto/kek/local.js';
import { Keyring } from '../src/crypto/keyring.js';
import { HmacSha256Key } from '../src/crypto/hmac-sha256.js';
import { nativeCryptoStatus } from '../src/crypto/native.js';
import { encryptBind } from '../src/encryption/params.js';
import { decryptDataRow, type FieldPlan } from '../src/encryption/rows.js';
import { ValueCodec } from '../src/encryption/values.js';
import { encodeDataRow } from '../src/protocol/backend/data-row.js';
import { encodeBind } from '../src/protocol/frontend/bind.js';

interface PeerFernet {
  Secret: new (b64: string) => object;
  Token: new (o: { secret: object; token?: string; ttl: number }) => { encode(m: string): string; decode(): string };
}
const peer = createRequire(import.meta.url)('fernet') as PeerFernet;

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1.5);
const ROUNDS = 5;
const PLAINTEXT = 'pan=4111111111111111;exp=12/29;cvv=123;x'; // 40 bytes
const PT = Buffer.from(PLAINTEXT);

/**
 * Operations per second of fn: the best of ROUNDS timed rounds (after a
 * warm-up). Best-of, because the machine may be shared: interference only
 * ever makes a round slower.
 */
function measure(fn: (i: number) => unknown): number {
  for (let i = 0; i < 5000; i++) fn(i);
  let best = 0;
  let ops = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint();
    const until = start + BigInt(Math.round((SECONDS / ROUNDS) * 1e9));
    let now = start;
    let n = 0;
    while (now < until) {
      for (let j = 0; j < 500; j++) fn(ops + j);
      ops += 500;
      n += 500;
      now = process.hrtime.bigint();
    }
    best = Math.max(best, n / (Number(now - start) / 1e9));
  }
  return best;
}

async function measureAsync(fn: (i: number) => Promise<unknown>, batch: number): Promise<number> {
  let best = 0;
  let ops = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint();
    let n = 0;
    while (Number(process.hrtime.bigint() - start) < (SECONDS / ROUNDS) * 1e9) {
      await Promise.all(Array.from({ length: batch }, (_, j) => fn(ops + j)));
      ops += batch;
      n += batch;
    }
    best = Math.max(best, n / (Number(process.hrtime.bigint() - start) / 1e9));
  }
  return best;
}

const rows: { name: string; ops: number; note?: string }[] = [];
const add = (name: string, ops: number, note?: string) => {
  rows.push({ name, ops, ...(note !== undefined && { note }) });
};

const policy = { maxAgeSeconds: 300, maxUses: 100_000, cacheSize: 10_000, cacheTtlSeconds: 3600 };

// ---- raw Fernet ---------------------------------------------------------
const raw = randomBytes(32);
const key = new FernetKey(raw);
const b64 = raw.toString('base64url') + '=';
const secret = new peer.Secret(b64);
const tokens = Array.from({ length: 1024 }, () => encrypt(key, PT));

const oursEnc = measure(() => encrypt(key, PT));
const peerEnc = measure(() => new peer.Token({ secret, ttl: 0 }).encode(PLAINTEXT));
const oursDec = measure((i) => decrypt(key, tokens[i & 1023]!));
const peerDec = measure((i) => new peer.Token({ secret, token: tokens[i & 1023]!, ttl: 0 }).decode());
add('Fernet encrypt (ours)', oursEnc, `${(oursEnc / peerEnc).toFixed(1)}x npm fernet`);
add('Fernet encrypt (npm fernet)', peerEnc);
add('Fernet decrypt (ours)', oursDec, `${(oursDec / peerDec).toFixed(1)}x npm fernet`);
add('Fernet decrypt (npm fernet)', peerDec);

// A token's MAC: the pad states computed once per key (what Fernet uses) vs an Hmac object per value.
const macKey = randomBytes(16);
const mac = new HmacSha256Key(macKey);
const tokenBody = Buffer.from(tokens[0]!, 'base64url').subarray(0, -32);
const jsMac = measure(() => mac.digest(tokenBody));
const nodeMac = measure(() => createHmac('sha256', macKey).update(tokenBody).digest());
add('HMAC-SHA256 of a token, pad states', jsMac, `${(jsMac / nodeMac).toFixed(1)}x createHmac per value`);
add('HMAC-SHA256 of a token, createHmac', nodeMac);

// ---- envelopes ----------------------------------------------------------
const kek = randomBytes(32);
const fresh = new Keyring({ primary: LocalKekBackend.fromKeys([kek]), readable: [], dek: { ...policy, maxAgeSeconds: 0 } });
add('envelope encrypt, fresh DEK per value', measure(() => fresh.tryEncryptSync(PT)), 'generate + GCM wrap each');

const reuse = new Keyring({ primary: LocalKekBackend.fromKeys([kek]), readable: [], dek: policy });
add('envelope encrypt, DEK reuse', measure(() => reuse.tryEncryptSync(PT)), 'maxUses 100000');

// 1024 values over 64 DEKs, read by a keyring that did not write them.
const writer = new Keyring({ primary: LocalKekBackend.fromKeys([kek]), readable: [], dek: { ...policy, maxUses: 16 } });
const values = Array.from({ length: 1024 }, () => writer.tryEncryptSync(PT)!);
const warm = new Keyring({ primary: LocalKekBackend.fromKeys([kek]), readable: [], dek: policy });
add('envelope decrypt, warm DEK cache', measure((i) => warm.tryDecryptSync(values[i & 1023]!)), 'sync path');
const cold = new Keyring({ primary: LocalKekBackend.fromKeys([kek]), readable: [], dek: { ...policy, cacheSize: 0 } });
add('envelope decrypt, cold cache', measure((i) => cold.tryDecryptSync(values[i & 1023]!)), 'GCM unwrap each');

// The async string API the admin tools use, for comparison with the sync path.
const strings = values.map((v) => v.toString('latin1'));
const asyncOps = await measureAsync((i) => warm.decrypt(strings[i & 1023]!), 256);
add('envelope decrypt, warm, async string API', asyncOps, 'Promise per value');

// ---- the proxy's per-value paths -------------------------------------------
const column = { column: 'secret', searchable: false, onDecryptError: 'error' as const, encryptEmpty: false };
const codec = new ValueCodec(warm, { size: 10_000, ttlMs: 3_600_000 });
const field: FieldPlan = { index: 1, policy: column, shape: 'text', binary: false, label: 'public.t.secret', table: 'public.t', column: 'secret' };
const plan = { fields: [field], unmapped: [], visits: [{ index: 1, field }] };
const dataRows = values.map((v, i) => encodeDataRow([Buffer.from(String(i)), v]));
const noop = () => {};
add('DataRow rewrite, value cache hit', measure((i) => decryptDataRow(dataRows[i & 1023]!, plan, codec, noop)), '2 fields, 1 decrypted');
const uncached = new ValueCodec(warm);
add('DataRow rewrite, no value cache', measure((i) => decryptDataRow(dataRows[i & 1023]!, plan, uncached, noop)), 'HMAC + AES per value');
const target = { schema: 'public', table: 't', column: 'secret', policy: column };
const bindPlan = { writes: new Map([[1, { param: 1, target, elements: false, ranges: [] }]]) };
const bindCtx = { shapeOf: () => 'text' as const, codec: new ValueCodec(reuse), key: () => { throw new Error('no searchable key'); } };
const bind = encodeBind({ portal: '', statement: 'P0_1', paramFormats: [], values: [PT], resultFormats: [] });
add('Bind rewrite, 1 parameter encrypted', measure(() => encryptBind(bind, bindPlan, bindCtx, 'P0_1')), 'DEK reuse');

// ---- report -------------------------------------------------------------
const w = Math.max(...rows.map((r) => r.name.length));
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const lines = [
  `pgcmek crypto benchmark: ${PT.length}-byte plaintext, one core, node ${process.version}, best of ${ROUNDS} rounds in ${SECONDS}s per row`,
  `crypto path: ${nativeCryptoStatus().detail} (PGCMEK_NATIVE=off measures the JavaScript path)`,
  '',
  `${'operation'.padEnd(w)}  ${'ops/s'.padStart(11)}  ${'µs/op'.padStart(7)}  note`,
  `${'-'.repeat(w)}  ${'-'.repeat(11)}  ${'-'.repeat(7)}  ----`,
  ...rows.map((r) => `${r.name.padEnd(w)}  ${fmt(r.ops).padStart(11)}  ${(1e6 / r.ops).toFixed(2).padStart(7)}  ${r.note ?? ''}`),
];
process.stdout.write(lines.join('\n') + '\n');
await Promise.all([fresh, reuse, writer, warm, cold].map((k) => k.close()));
