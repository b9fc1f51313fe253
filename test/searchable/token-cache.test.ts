// The token cache: a plaintext enters on its second sight, a hit gives exactly
// the token computed for that plaintext, and a slot shared by two plaintexts
// (direct mapping) never answers one with the other's token.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TokenCache } from '../../src/searchable/token-cache.js';

/** A stand-in token function: distinct per plaintext, and counted. */
function counter() {
  const calls: string[] = [];
  return { calls, fn: (pt: Buffer) => (calls.push(pt.toString('hex')), `T(${pt.toString('hex')})`) };
}

describe('TokenCache', () => {
  it('admits a plaintext on its second sight, then answers from memory', () => {
    const c = new TokenCache(100);
    const { calls, fn } = counter();
    const pt = Buffer.from('abc');
    expect(c.get(pt, fn)).toBe('T(616263)');
    expect(c.get(pt, fn)).toBe('T(616263)');
    expect(calls).toHaveLength(2);
    expect(c.count()).toBe(1);
    expect(c.get(Buffer.from('abc'), fn)).toBe('T(616263)');
    expect(calls).toHaveLength(2);
    expect([c.hits, c.misses]).toEqual([1, 2]);
  });

  it('one slot for every plaintext: each answer is still the token of the plaintext asked for', () => {
    const c = new TokenCache(1);
    const { fn } = counter();
    // Same lengths, prefixes of each other, empty, non-ASCII bytes.
    const pts = [Buffer.from('aaaa'), Buffer.from('aaab'), Buffer.from('aaa'), Buffer.from('aaaaa'), Buffer.alloc(0), Buffer.from([0xff, 0x00, 0x80])];
    for (let round = 0; round < 4; round++) for (const p of pts) expect(c.get(p, fn)).toBe(`T(${p.toString('hex')})`);
    for (let i = 0; i < 2000; i++) {
      const p = randomBytes(i % 40);
      expect(c.get(p, fn)).toBe(`T(${p.toString('hex')})`);
      expect(c.get(p, fn)).toBe(`T(${p.toString('hex')})`);
      expect(c.get(p, fn)).toBe(`T(${p.toString('hex')})`);
    }
    expect(c.hits).toBeGreaterThan(0);
  });

  it('holds at most `size` plaintexts', () => {
    const c = new TokenCache(50);
    const { fn } = counter();
    for (let i = 0; i < 1000; i++) for (let k = 0; k < 2; k++) c.get(Buffer.from(`v${i}`), fn);
    expect(c.count()).toBeLessThanOrEqual(50);
    expect(c.count()).toBeGreaterThan(0);
  });

  it('size 0 keeps nothing; clear() forgets everything', () => {
    const off = new TokenCache(0);
    const { calls, fn } = counter();
    for (let i = 0; i < 3; i++) off.get(Buffer.from('x'), fn);
    expect(calls).toHaveLength(3);
    expect(off.enabled).toBe(false);
    const c = new TokenCache(10);
    for (let i = 0; i < 3; i++) c.get(Buffer.from('x'), fn);
    expect(c.count()).toBe(1);
    c.clear();
    expect(c.count()).toBe(0);
    c.get(Buffer.from('x'), fn);
    expect(c.count()).toBe(0); // the admission filter was cleared too: a first sight again
  });
});
