// The one-pass Bind of a rewritten statement (searchable-bind.ts): byte for
// byte the frame the decode/encode path builds (client values kept, candidates
// in their slots, formats and result formats as sent), and undefined for every
// frame that path must handle (binary values, arrays, writes, bad frames).
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ColumnPolicy, TablePolicy } from '../../src/config/types.js';
import { LocalKekBackend } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { encryptBind } from '../../src/encryption/params.js';
import { fillSearchableBind } from '../../src/encryption/searchable-bind.js';
import { ValueCodec } from '../../src/encryption/values.js';
import { planParse, type ParseRewrite } from '../../src/encryption/searchable-rewrite.js';
import { keyNameOfTarget } from '../../src/encryption/searchable-session.js';
import { statementShape } from '../../src/encryption/searchable-sql.js';
import { decodeBind, encodeBind, type Bind } from '../../src/protocol/frontend/bind.js';
import { SearchableColumnKey } from '../../src/searchable/column-key.js';
import { DeterministicKey } from '../../src/searchable/deterministic.js';
import { GroupKey, makeWrapping } from '../../src/searchable/group-key.js';
import { SqlAnalyzer } from '../../src/sql/analyzer.js';
import { initSql } from '../../src/sql/index.js';

const col = (column: string, extra: Partial<ColumnPolicy> = {}): ColumnPolicy => ({ column, searchable: true, onDecryptError: 'error', encryptEmpty: false, ...extra });
const tables: TablePolicy[] = [{ schema: 'public', table: 'api_token', columns: [col('token_hash'), col('secret', { searchable: false })] }];
let analyzer: SqlAnalyzer;
beforeAll(async () => {
  await initSql();
  analyzer = new SqlAnalyzer({ tables, columnsOf: () => undefined });
});

/** A column key with `wraps` KEK wrappings of one DEK (a rotation in progress when 2). */
function columnKey(wraps: number, cache = 0): SearchableColumnKey {
  const dek = randomBytes(32);
  const g = new GroupKey('column:"public"."api_token"."token_hash"', new DeterministicKey(dek), () => 0, cache);
  const backends = Array.from({ length: wraps }, () => LocalKekBackend.fromKeys([randomBytes(32)]));
  g.setWrappings(
    backends.map((b) => makeWrapping(b.wrapSync(dek), true, -Infinity)),
    { tag: backends[0]!.tag, kekId: backends[0]!.primaryKekId() },
  );
  return new SearchableColumnKey({ schema: 'public', table: 'api_token', column: 'token_hash', encryptEmpty: false }, g, 3);
}

function rewrite(sql: string, types: number[] = [], slots = 3): { rw: ParseRewrite; writes: ReadonlyMap<number, unknown> } {
  const bytes = Buffer.from(sql, 'utf8');
  const plan = analyzer.analyze(bytes);
  if (plan.kind !== 'plan') throw new Error('expected a plan');
  return { rw: planParse(bytes, plan, statementShape(sql, plan.predicates), types, slots, keyNameOfTarget), writes: plan.params };
}

/** What the decode/encode path sends: the client's values, each fill's candidates in its targets, no format codes. */
function reference(frame: Buffer, rw: ParseRewrite, key: SearchableColumnKey): Buffer {
  const b = decodeBind(frame);
  const values: (Buffer | null)[] = [...b.values, ...new Array<Buffer | null>(rw.total - rw.clientCount).fill(null)];
  for (const f of rw.scalars) {
    const pt = f.src !== undefined ? b.values[f.src - 1]! : f.value!;
    const c = pt === null ? f.targets.map(() => null) : key.slots(pt, f.targets.length);
    f.targets.forEach((t, i) => (values[t - 1] = c[i]!));
  }
  return encodeBind({ ...b, paramFormats: [], values });
}

const bind = (b: Partial<Bind> & { values: (Buffer | null)[] }) => encodeBind({ portal: '', statement: '', paramFormats: [], resultFormats: [], ...b });

describe('fillSearchableBind', () => {
  const cases: [string, (Buffer | null)[]][] = [
    ['SELECT id FROM api_token WHERE token_hash = $1', [Buffer.from('1000000000000000123')]],
    ['SELECT id FROM api_token WHERE token_hash = $1', [null]],
    ['SELECT id FROM api_token WHERE token_hash = $1', [Buffer.alloc(0)]],
    ['SELECT id FROM api_token WHERE token_hash = $2 AND id = $1', [Buffer.from('7'), Buffer.from('sha256:' + 'ab'.repeat(32))]],
    ["SELECT id FROM api_token WHERE token_hash = 'abc' AND id = $1", [Buffer.from('7')]],
    ['SELECT id FROM api_token WHERE token_hash IN ($1, $2)', [Buffer.from('a'), Buffer.from('Grüße 🔑')]],
    ['SELECT id FROM api_token WHERE token_hash = $1 OR id::text = $1', [Buffer.from('x'.repeat(100))]],
    ['SELECT id FROM api_token WHERE token_hash <> $1 AND token_hash = $2', [Buffer.from('p'), null]],
  ];
  for (const wraps of [1, 2]) {
    it.each(cases)(`${wraps} wrapping(s): %s`, (sql, values) => {
      const key = columnKey(wraps);
      const { rw, writes } = rewrite(sql);
      for (const head of [
        { paramFormats: [] },
        { paramFormats: [0] },
        { paramFormats: values.map(() => 0), resultFormats: [1] },
        { portal: 'pörtal', statement: 'stmt_1', resultFormats: [0, 1, 1] },
      ]) {
        const frame = bind({ ...head, values });
        const out = fillSearchableBind(frame, rw, writes, () => key);
        expect(out).toBeDefined();
        expect(out!.equals(reference(frame, rw, key))).toBe(true);
        expect(decodeBind(out!).values).toHaveLength(rw.total);
      }
    });
  }

  it('the reference is what params.ts builds', () => {
    const key = columnKey(2);
    const b = LocalKekBackend.fromKeys([randomBytes(32)]);
    const codec = new ValueCodec(new Keyring({ primary: b, readable: [], dek: { maxAgeSeconds: 300, maxUses: 1000, cacheSize: 10, cacheTtlSeconds: 0 } }));
    for (const [sql, values] of cases) {
      const { rw, writes } = rewrite(sql);
      const frame = bind({ paramFormats: [0], values, resultFormats: [1] });
      const general = encryptBind(frame, { writes: new Map(), rewrite: rw }, { shapeOf: () => 'text', codec, key: () => key }, '');
      expect(Buffer.isBuffer(general) && general.equals(reference(frame, rw, key))).toBe(true);
      expect(fillSearchableBind(frame, rw, writes, () => key)!.equals(general as Buffer)).toBe(true);
    }
  });

  it('an unnamed statement rewritten for the wrappings of the moment (1 slot): the candidate in the client parameter; a wrapping more is 55000 on both paths, never a lookup that misses', () => {
    const one = columnKey(1);
    const { rw, writes } = rewrite('SELECT id FROM api_token WHERE token_hash = $1', [], 1);
    expect(rw.total).toBe(1); // `col = $1` kept: no parameter added
    const frame = bind({ values: [Buffer.from('1000000000000000123')] });
    const out = fillSearchableBind(frame, rw, writes, () => one)!;
    expect(decodeBind(out).values).toEqual(one.candidates(Buffer.from('1000000000000000123')));
    // The key gained a KEK wrapping since that Parse (a rotation began): refused, never one form of two.
    const two = columnKey(2);
    expect(() => fillSearchableBind(frame, rw, writes, () => two)).toThrow(/has 2 KEK wrappings but this statement's comparisons hold 1 candidates/);
    const b = LocalKekBackend.fromKeys([randomBytes(32)]);
    const codec = new ValueCodec(new Keyring({ primary: b, readable: [], dek: { maxAgeSeconds: 300, maxUses: 1000, cacheSize: 10, cacheTtlSeconds: 0 } }));
    expect(() => encryptBind(bind({ paramFormats: [1], values: [Buffer.from('v')] }), { writes: new Map(), rewrite: rw }, { shapeOf: () => 'text', codec, key: () => two }, '')).toThrow(
      /comparisons hold 1 candidates/,
    );
    // Two wrappings at Parse: two slots, both forms bound.
    const rw2 = rewrite('SELECT id FROM api_token WHERE token_hash = $1', [], 2);
    expect(decodeBind(fillSearchableBind(frame, rw2.rw, rw2.writes, () => two)!).values).toEqual(two.candidates(Buffer.from('1000000000000000123')));
  });

  it('the token cache changes nothing in the frame', () => {
    const cached = columnKey(1, 16);
    const { rw, writes } = rewrite('SELECT id FROM api_token WHERE token_hash = $1');
    for (let i = 0; i < 30; i++) {
      const frame = bind({ values: [Buffer.from(`v${i % 4}`)] });
      expect(fillSearchableBind(frame, rw, writes, () => cached)!.equals(reference(frame, rw, cached))).toBe(true);
    }
  });

  it('leaves to the general path what it does not build', () => {
    const key = columnKey(1);
    const { rw, writes } = rewrite('SELECT id FROM api_token WHERE token_hash = $1');
    const ok = bind({ values: [Buffer.from('v')] });
    expect(fillSearchableBind(ok, rw, writes, () => key)).toBeDefined();
    // binary parameters, another count, a truncated or padded frame, a wrong length word
    expect(fillSearchableBind(bind({ paramFormats: [1], values: [Buffer.from('v')] }), rw, writes, () => key)).toBeUndefined();
    expect(fillSearchableBind(bind({ values: [Buffer.from('v'), Buffer.from('w')] }), rw, writes, () => key)).toBeUndefined();
    expect(fillSearchableBind(ok.subarray(0, ok.length - 1), rw, writes, () => key)).toBeUndefined();
    const long = Buffer.concat([ok, Buffer.from([0])]);
    long.writeInt32BE(long.length - 1, 1);
    expect(fillSearchableBind(long, rw, writes, () => key)).toBeUndefined();
    const badLen = Buffer.from(ok);
    badLen.writeInt32BE(3, 1);
    expect(fillSearchableBind(badLen, rw, writes, () => key)).toBeUndefined();
    // writes to encrypted columns, array parameters
    const upd = rewrite('UPDATE api_token SET token_hash = $2 WHERE token_hash = $1');
    expect(upd.writes.size).toBeGreaterThan(0);
    expect(fillSearchableBind(bind({ values: [Buffer.from('a'), Buffer.from('b')] }), upd.rw, upd.writes, () => key)).toBeUndefined();
    const any = rewrite('SELECT id FROM api_token WHERE token_hash = ANY($1)');
    expect(fillSearchableBind(bind({ values: [Buffer.from('{a,b}')] }), any.rw, any.writes, () => key)).toBeUndefined();
  });

  it('a key that cannot serve the comparison throws, as the general path does', () => {
    // The statement's arity decides (not the key's configured slot count): 2 wrappings do not fit 1 slot, but fit 3.
    const narrow = columnKey(2);
    const one = new SearchableColumnKey(narrow.column, narrow.group, 1);
    const tight = rewrite('SELECT id FROM api_token WHERE token_hash = $1', [], 1);
    expect(() => fillSearchableBind(bind({ values: [Buffer.from('v')] }), tight.rw, tight.writes, () => one)).toThrow(expect.objectContaining({ sqlstate: '55000' }));
    const { rw, writes } = rewrite('SELECT id FROM api_token WHERE token_hash = $1');
    const out = fillSearchableBind(bind({ values: [Buffer.from('v')] }), rw, writes, () => one)!;
    expect(decodeBind(out).values.slice(0, 2)).toEqual(narrow.candidates(Buffer.from('v')));
  });
});
