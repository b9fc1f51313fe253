// GroupKey without a database: which header new values get (the activation
// rule), what the candidates are, and recognising a value's header.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LocalKekBackend } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { DeterministicKey } from '../../src/searchable/deterministic.js';
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
    expect(g.wrappingOf(Buffer.concat([w1.header.subarray(0, w1.header.length - 2), Buffer.from('Q|gAAA')]))).toBeUndefined();
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
});
