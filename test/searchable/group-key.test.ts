// GroupKey without a database: which header new values get (the activation
// rule), what the candidates are, and recognising a value's header.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LocalKekBackend } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { SearchableColumnKey } from '../../src/searchable/column-key.js';
import { DeterministicKey } from '../../src/searchable/deterministic.js';
import { quoteLiteral } from '../../src/sql/lexical.js';
import { GroupKey, makeWrapping } from '../../src/searchable/group-key.js';

const DEK_POLICY = { maxAgeSeconds: 300, maxUses: 1000, cacheSize: 100, cacheTtlSeconds: 0 };

function setup() {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const b1 = LocalKekBackend.fromKeys([k1]);
  const b2 = LocalKekBackend.fromKeys([k2, k1]); // KEK2 primary, KEK1 readable
  const dek = randomBytes(32);
  let now = 1000;
  const g = new GroupKey('column:"public"."t"."c"', new DeterministicKey(dek), () => now);
  const w1 = makeWrapping(b1.wrapSync(dek), true, -Infinity);
  const w2 = makeWrapping(b2.wrapSync(dek), true, 5000);
  return { b1, b2, g, w1, w2, dek, tick: (ms: number) => (now += ms), p2: { tag: b2.tag, kekId: b2.primaryKekId() } };
}

describe('GroupKey', () => {
  it('writes under the old header until the new primary wrapping is active, then under the new one', () => {
    const { g, w1, w2, p2, tick } = setup();
    g.setWrappings([w1, w2], p2);
    expect(g.primaryWrapping()).toBe(w2);
    expect(g.writeWrapping()).toBe(w1);
    tick(3999);
    expect(g.writeWrapping()).toBe(w1);
    tick(1);
    expect(g.writeWrapping()).toBe(w2);
    const v = g.encrypt(Buffer.from('tok'));
    expect(v.subarray(0, w2.header.length).equals(w2.header)).toBe(true);
  });

  it('candidates: one per wrapping, the same token after each header; both decrypt with a keyring holding both KEKs', async () => {
    const { g, w1, w2, p2, b2 } = setup();
    g.setWrappings([w1, w2], p2);
    const c = g.candidates(Buffer.from('tok'));
    expect(c).toHaveLength(2);
    const tok = (b: Buffer) => b.toString('latin1').split('|')[2];
    expect(tok(c[0]!)).toBe(tok(c[1]!));
    expect(c[0]!.subarray(0, w1.header.length).equals(w1.header)).toBe(true);
    expect(c[1]!.subarray(0, w2.header.length).equals(w2.header)).toBe(true);
    const ring = new Keyring({ primary: b2, readable: [], dek: DEK_POLICY });
    for (const v of c) expect((await ring.decryptBytes(v)).toString()).toBe('tok');
  });

  it('wrappingOf recognises its headers only; open authenticates', () => {
    const { g, w1, w2, p2 } = setup();
    g.setWrappings([w1, w2], p2);
    const [a, b] = g.candidates(Buffer.from('x'));
    expect(g.wrappingOf(a!)).toBe(w1);
    expect(g.wrappingOf(b!)).toBe(w2);
    expect(g.wrappingOf(Buffer.from('x'))).toBeUndefined();
    // The header with its nonce's last character changed (never to itself: 1 in 64 random nonces end in 'Q').
    const last = String.fromCharCode(w1.header[w1.header.length - 2]!);
    expect(g.wrappingOf(Buffer.concat([w1.header.subarray(0, w1.header.length - 2), Buffer.from(`${last === 'Q' ? 'R' : 'Q'}|gAAA`)]))).toBeUndefined();
    expect(g.open(a!, w1).toString()).toBe('x');
    const bad = Buffer.from(a!);
    bad[bad.length - 5] ^= 1;
    expect(() => g.open(bad, w1)).toThrow(/CMEK decryption failed/);
  });

  it('an unverified wrapping is a candidate but never written under', () => {
    const { g, w1, p2, b2, dek, tick } = setup();
    const foreign = makeWrapping(LocalKekBackend.fromKeys([randomBytes(32)]).wrapSync(dek), false, -Infinity);
    const w2 = makeWrapping(b2.wrapSync(dek), true, 5000);
    g.setWrappings([w1, w2, foreign], p2);
    expect(g.candidates(Buffer.from('x'))).toHaveLength(3);
    expect(g.writeWrapping()).toBe(w1);
    tick(10_000);
    expect(g.writeWrapping()).toBe(w2);
  });

  it('with no active alternative the pending primary is used', () => {
    const { g, p2, b2, dek } = setup();
    const w2 = makeWrapping(b2.wrapSync(dek), true, 5000);
    g.setWrappings([w2], p2);
    expect(g.writeWrapping()).toBe(w2);
  });

  it('slots: padded to a fixed arity with repeats of the first; too many wrappings is a 55000 error', () => {
    const { g, w1, w2, p2 } = setup();
    g.setWrappings([w1], p2);
    const one = g.candidates(Buffer.from('x'), 3);
    expect(one).toHaveLength(3);
    expect(one[1]!.equals(one[0]!) && one[2]!.equals(one[0]!)).toBe(true);
    g.setWrappings([w1, w2], p2);
    const two = g.candidates(Buffer.from('x'), 3);
    expect(new Set(two.map(String)).size).toBe(2);
    expect(() => g.candidates(Buffer.from('x'), 1)).toThrow(expect.objectContaining({ name: 'SearchableKeyError', sqlstate: '55000' }));
    expect(g.candidates(Buffer.from('x'))).toHaveLength(2);
  });

  it('with the token cache, values and candidates are byte-identical to the uncached ones, hit or miss', () => {
    const { w1, w2, p2, dek } = setup();
    const cached = new GroupKey('column:"public"."t"."c"', new DeterministicKey(dek), () => 10_000, 8);
    const plain = new GroupKey('column:"public"."t"."c"', new DeterministicKey(dek), () => 10_000, 0);
    for (const g of [cached, plain]) g.setWrappings([w1, w2], p2);
    const pts = Array.from({ length: 40 }, (_, i) => Buffer.from(i % 5 === 0 ? '' : `token-${i % 13}-${'x'.repeat(i)}`));
    for (let round = 0; round < 3; round++) {
      for (const pt of pts) {
        const a = cached.candidates(pt, 3);
        const b = plain.candidates(pt, 3);
        expect(a.map((x) => x.toString('latin1'))).toEqual(b.map((x) => x.toString('latin1')));
        expect(cached.encrypt(pt).equals(plain.encrypt(pt))).toBe(true);
        expect(cached.token(pt)).toBe(plain.token(pt));
      }
    }
    expect(cached.cacheStats().hits).toBeGreaterThan(0);
    expect(plain.cacheStats().hits).toBe(0);
  });

  it('each candidate is its own value: header, then the token, nothing of its neighbours', async () => {
    const { g, w1, w2, p2, b2 } = setup();
    g.setWrappings([w1, w2], p2);
    const [a, b] = g.candidates(Buffer.from('neighbours'));
    expect(a!.length).toBe(w1.header.length + g.token(Buffer.from('neighbours')).length);
    expect(b!.toString('latin1')).toBe(w2.header.toString('latin1') + g.token(Buffer.from('neighbours')));
    const ring = new Keyring({ primary: b2, readable: [], dek: DEK_POLICY });
    expect((await ring.decryptBytes(Buffer.from(a!))).toString()).toBe('neighbours');
  });

  it('quotedCandidates: each candidate as a SQL literal, in order', () => {
    const { g, w1, w2, p2 } = setup();
    g.setWrappings([w1, w2], p2);
    for (const pt of ['x', '', "it's", 'back\\slash', 'Grüße 🔑']) {
      const q = g.quotedCandidates(Buffer.from(pt)).map((b) => b.toString('latin1'));
      expect(q).toEqual(g.candidates(Buffer.from(pt)).map((c) => quoteLiteral(c.toString('utf8'))));
      expect(q.every((l) => /^'cmek:v1:[A-Za-z0-9_|=-]+'$/.test(l))).toBe(true);
    }
    // Three wrappings, the token from the cache on later calls: each literal is whole and only its own.
    const dek = randomBytes(32);
    const cached = new GroupKey('column:"public"."t"."d"', new DeterministicKey(dek), () => 0, 16);
    const wraps = [randomBytes(32), randomBytes(32), randomBytes(32)].map((k) => makeWrapping(LocalKekBackend.fromKeys([k]).wrapSync(dek), true, -Infinity));
    cached.setWrappings(wraps, { tag: wraps[0]!.wrapped.tag, kekId: wraps[0]!.wrapped.kekId });
    for (let i = 0; i < 3; i++) {
      const q = cached.quotedCandidates(Buffer.from('cached')).map((b) => b.toString('latin1'));
      expect(q).toEqual(cached.candidates(Buffer.from('cached')).map((c) => quoteLiteral(c.toString('utf8'))));
      expect(q.map((l) => l.slice(1, wraps[0]!.header.length + 1))).toEqual(wraps.map((w) => w.header.toString('latin1')));
    }
    expect(cached.cacheStats().hits).toBeGreaterThan(0);
    const col = new SearchableColumnKey({ schema: 'public', table: 't', column: 'c', encryptEmpty: false }, g, 3);
    expect(col.quotedCandidates(Buffer.alloc(0)).map(String)).toEqual(["''"]);
    const enc = new SearchableColumnKey({ schema: 'public', table: 't', column: 'c', encryptEmpty: true }, g, 3);
    expect(enc.quotedCandidates(Buffer.alloc(0))).toEqual(g.quotedCandidates(Buffer.alloc(0)));
  });
});
