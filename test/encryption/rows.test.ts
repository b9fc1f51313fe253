// The DataRow rewrite: one pass over the fields, planned fields decrypted, the
// new frame built in one piece; rows with nothing to decrypt come back untouched.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResolvedCatalog, ResolvedColumn } from '../../src/catalog/types.js';
import type { ColumnPolicy } from '../../src/config/types.js';
import { CMEKDecryptionError } from '../../src/crypto/errors.js';
import { generateKekFile } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { decodeDataRow, encodeDataRow } from '../../src/protocol/backend/data-row.js';
import type { ResultShape } from '../../src/proxy/state-types.js';
import { decryptDataRow, planRows, RowDecryptError, type RowPlan } from '../../src/encryption/rows.js';
import { ValueCodec } from '../../src/encryption/values.js';
import { WRITTEN, type OutputSink } from '../../src/proxy/out-batch.js';

const policy = (over: Partial<ColumnPolicy> = {}): ColumnPolicy => ({ column: 'secret', searchable: false, onDecryptError: 'error', encryptEmpty: false, ...over });
const TEXT = 25;
const T1 = 16_001;

/** A catalog with table T1 (id int, secret text, note text, token text): secret and token configured. */
function catalog(tokenPolicy: ColumnPolicy): ResolvedCatalog {
  const cols: Record<number, ResolvedColumn> = {
    2: col('secret', 2, policy()),
    4: col('token', 4, tokenPolicy),
  };
  function col(column: string, attnum: number, p: ColumnPolicy): ResolvedColumn {
    return { schema: 'public', table: 't', column, tableOid: T1, attnum, typeOid: TEXT, typeName: 'text', policy: p, via: 'table', source: { schema: 'public', table: 't', column } };
  }
  return {
    lookup: (oid, attnum) => (oid === T1 ? cols[attnum] : undefined),
    columnsOf: () => undefined,
    relation: () => ({ oid: T1, schema: 'public', table: 't', relkind: 'r', columns: [2, 4].map((a) => ({ name: cols[a]!.column, attnum: a, typeOid: TEXT, typeName: 'text', baseTypeOid: TEXT })) }),
    tables: [],
    columns: Object.values(cols),
    warnings: [],
    errors: [],
    errorOf: () => undefined,
  };
}

function shape(fields: { oid: number; attr: number; type?: number }[], formats?: number[]): ResultShape {
  const fs = fields.map((f, i) => ({ name: `c${i}`, tableOid: f.oid, columnAttr: f.attr, typeOid: f.type ?? TEXT, typeSize: -1, typeModifier: -1, format: formats?.[i] ?? 0 }));
  return { fields: fs, formats: fs.map((f) => f.format) };
}

const b = (s: string) => Buffer.from(s, 'utf8');

describe('decryptDataRow', () => {
  let dir: string;
  let keyring: Keyring;
  let codec: ValueCodec;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pgcmek-rows-'));
    generateKekFile(join(dir, 'kek'));
    keyring = await Keyring.fromConfig({ backend: 'local', local: { path: join(dir, 'kek'), previous: [] }, dek: { maxAgeSeconds: 300, maxUses: 1000, cacheSize: 10, cacheTtlSeconds: 0 } });
    codec = new ValueCodec(keyring, { size: 100, ttlMs: 0 });
  });
  afterAll(async () => {
    await keyring.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const enc = async (s: string) => b(await keyring.encrypt(s));
  const full = () => shape([{ oid: T1, attr: 1 }, { oid: T1, attr: 2 }, { oid: T1, attr: 3 }, { oid: T1, attr: 4 }]);

  it('plans only configured fields (and, when asked, text fields of no table), in column order', () => {
    const plan = planRows(shape([{ oid: T1, attr: 4 }, { oid: 0, attr: 0 }, { oid: T1, attr: 2 }, { oid: 0, attr: 0, type: 23 }]), catalog(policy()), true)!;
    expect(plan.fields.map((f) => [f.index, f.label])).toEqual([[0, 'public.t.token'], [2, 'public.t.secret']]);
    expect(plan.unmapped).toEqual([1]);
    expect(plan.visits.map((v) => [v.index, v.field?.column])).toEqual([[0, 'token'], [1, undefined], [2, 'secret']]);
    expect(planRows(shape([{ oid: T1, attr: 1 }, { oid: 0, attr: 0 }]), catalog(policy()), false)).toBeNull();
  });

  it('a cached field, then a field whose decryption replaces it in the cache: the first value is kept intact', async () => {
    const tiny = new ValueCodec(keyring, { size: 1, ttlMs: 0 });
    const plan = planRows(full(), catalog(policy()), false)!;
    const one = planRows(shape([{ oid: T1, attr: 1 }, { oid: T1, attr: 2 }]), catalog(policy()), false)!;
    const s = await enc('first-secret');
    const t = await enc('second-token');
    for (let k = 0; k < 3; k++) {
      // One cached field alone is spliced straight from the cache; `s` is then the one value cached.
      const single = decryptDataRow(encodeDataRow([b('2'), s]), one, tiny, () => {}) as Buffer;
      expect(decodeDataRow(single).map((v) => v?.toString('utf8'))).toEqual(['2', 'first-secret']);
      // A hit on `s`, then `t` is decrypted and takes its place (and wipes its bytes).
      const out = decryptDataRow(encodeDataRow([b('1'), s, b('n'), t]), plan, tiny, () => {}) as Buffer;
      expect(decodeDataRow(out).map((v) => v?.toString('utf8'))).toEqual(['1', 'first-secret', 'n', 'second-token']);
    }
  });

  it('decrypts every planned field; other fields, NULLs and empty values keep their bytes', async () => {
    const plan = planRows(full(), catalog(policy()), false)!;
    const frame = encodeDataRow([b('42'), await enc('s3cret'), b('a note with cmek:v1: inside'), await enc('tok_é🔑')]);
    const out = decryptDataRow(frame, plan, codec, () => {}) as Buffer;
    expect(decodeDataRow(out).map((v) => v?.toString('utf8'))).toEqual(['42', 's3cret', 'a note with cmek:v1: inside', 'tok_é🔑']);
    const withNulls = encodeDataRow([null, await enc(''), b(''), null]);
    expect(decodeDataRow(decryptDataRow(withNulls, plan, codec, () => {}) as Buffer).map((v) => v?.toString())).toEqual([undefined, '', '', undefined]);
  });

  it('returns undefined (forward the same bytes) when nothing in the row is an envelope', () => {
    const plan = planRows(full(), catalog(policy()), false)!;
    expect(decryptDataRow(encodeDataRow([b('1'), b('legacy plaintext'), null, null]), plan, codec, () => {})).toBeUndefined();
    expect(decryptDataRow(encodeDataRow([b('1'), null, b('x'), b('cmek:v1')]), plan, codec, () => {})).toBeUndefined();
    // Fewer columns than planned (a different result): nothing read past the row.
    expect(decryptDataRow(encodeDataRow([b('1')]), plan, codec, () => {})).toBeUndefined();
  });

  it('with an output sink, the new row is written in place: the same bytes as the allocated one', async () => {
    // A sink that already holds other output: the row must land exactly at claimAt.
    const arena = Buffer.alloc(64 * 1024, 0xee);
    let used = 100;
    const claims: [number, number][] = [];
    const sink: OutputSink = {
      claimAt: 0,
      claim(n: number) {
        (this as { claimAt: number }).claimAt = used;
        claims.push([used, n]);
        used += n;
        return arena;
      },
    };
    const plan = planRows(full(), catalog(policy()), false)!;
    const one = planRows(shape([{ oid: T1, attr: 1 }, { oid: T1, attr: 2 }]), catalog(policy()), false)!;
    const s = await enc('sink-secret');
    const rows: [Buffer, RowPlan][] = [
      [encodeDataRow([b('1'), s]), one], // one field: cold, then from the value cache
      [encodeDataRow([b('1'), s]), one],
      [encodeDataRow([b('2'), await enc('x'.repeat(3000)), b('n'), await enc('t')]), plan], // several fields
      [encodeDataRow([b('3'), s, null, null]), plan],
    ];
    for (const [frame, p] of rows) {
      const want = decryptDataRow(frame, p, codec, () => {}) as Buffer;
      const before = claims.length;
      expect(decryptDataRow(frame, p, codec, () => {}, sink)).toBe(WRITTEN);
      expect(claims.length).toBe(before + 1);
      const [at, n] = claims.at(-1)!;
      expect(n).toBe(want.length);
      expect(arena.subarray(at, at + n)).toEqual(want);
    }
    expect(arena[99]).toBe(0xee); // nothing written before the first claim
    expect(arena[used]).toBe(0xee); // nor past the last
    // Nothing to decrypt: nothing claimed, the frame is forwarded.
    expect(decryptDataRow(encodeDataRow([b('1'), b('legacy')]), one, codec, () => {}, sink)).toBeUndefined();
    expect(claims).toHaveLength(rows.length);
  });

  it('a long value and a short one in one row: lengths and the frame length are rewritten', async () => {
    const plan = planRows(full(), catalog(policy()), false)!;
    const long = 'x'.repeat(5000);
    const frame = encodeDataRow([b('7'), await enc(long), b('n'.repeat(300)), await enc('s')]);
    const out = decryptDataRow(frame, plan, codec, () => {}) as Buffer;
    expect(out.readInt32BE(1)).toBe(out.length - 1);
    expect(decodeDataRow(out).map((v) => v?.toString())).toEqual(['7', long, 'n'.repeat(300), 's']);
  });

  it('a field that cannot be decrypted: RowDecryptError naming the column, or the stored value kept (on_decrypt_error: ciphertext)', async () => {
    const bad = Buffer.from(await keyring.encrypt('v'));
    bad[bad.length - 6] = bad[bad.length - 6] === 0x41 ? 0x42 : 0x41;
    const strict = planRows(full(), catalog(policy()), false)!;
    const frame = encodeDataRow([b('1'), await enc('ok'), null, bad]);
    try {
      decryptDataRow(frame, strict, codec, () => {});
      throw new Error('expected a RowDecryptError');
    } catch (e) {
      expect(e).toBeInstanceOf(RowDecryptError);
      expect((e as RowDecryptError).field.label).toBe('public.t.token');
      expect((e as RowDecryptError).cause).toBeInstanceOf(CMEKDecryptionError);
    }
    const lenient = planRows(full(), catalog(policy({ column: 'token', onDecryptError: 'ciphertext' })), false)!;
    const kept: string[] = [];
    const out = decryptDataRow(frame, lenient, codec, (f, err) => kept.push(`${f.column}:${err.reason}`)) as Buffer;
    expect(decodeDataRow(out).map((v) => v?.toString('latin1'))).toEqual(['1', 'ok', undefined, bad.toString('latin1')]);
    expect(kept).toEqual(['token:bad_mac']);
  });

  it('values that need a remote KEK call: a Promise of the same frame, failures as RowDecryptError', async () => {
    // Text values go through decryptText (also from decryptTextAt, the in-place path rows use).
    class SlowCodec extends ValueCodec {
      override decryptText(value: Buffer): Promise<Buffer> {
        return new Promise((res, rej) => setImmediate(() => {
          try {
            res(super.decryptText(value) as Buffer);
          } catch (e) {
            rej(e);
          }
        }));
      }
    }
    const slow = new SlowCodec(keyring);
    const plan: RowPlan = planRows(full(), catalog(policy()), false)!;
    const frame = encodeDataRow([b('1'), await enc('a'), null, await enc('b')]);
    const r = decryptDataRow(frame, plan, slow, () => {});
    expect(r).toBeInstanceOf(Promise);
    expect(decodeDataRow((await r)!).map((v) => v?.toString())).toEqual(['1', 'a', undefined, 'b']);
    const bad = Buffer.from(await keyring.encrypt('v'));
    bad[bad.length - 6] ^= 1;
    await expect(decryptDataRow(encodeDataRow([b('1'), bad, null, null]), plan, slow, () => {})).rejects.toBeInstanceOf(RowDecryptError);
  });

  it('decrypt_unmapped: a valid envelope in a field of no table is decrypted, anything else left alone', async () => {
    const plan = planRows(shape([{ oid: 0, attr: 0 }, { oid: 0, attr: 0 }, { oid: 0, attr: 0 }]), undefined, true)!;
    const bad = Buffer.from(await keyring.encrypt('v'));
    bad[bad.length - 6] ^= 1;
    const out = decryptDataRow(encodeDataRow([await enc('u1'), bad, b('plain')]), plan, codec, () => {}) as Buffer;
    expect(decodeDataRow(out).map((v) => v?.toString('latin1'))).toEqual(['u1', bad.toString('latin1'), 'plain']);
  });
});
