// The token cache: a plaintext enters on its second sight, a hit gives exactly
// the token computed for that plaintext, a slot shared by two plaintexts
// (direct mapping) never answers one with the other's token, and clear()
// wipes the plaintexts it held.
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { tokenTextLength } from '../../src/searchable/deterministic.js';
import { TokenCache } from '../../src/searchable/token-cache.js';

/** A stand-in token function: distinct per plaintext, as long as a real token text, and counted. */
function counter() {
  const calls: string[] = [];
  const fn = (pt: Buffer) => {
    calls.push(pt.toString('hex'));
    return createHash('sha512').update(pt).digest('base64url').repeat(8).slice(0, tokenTextLength(pt.length));
  };
  return { calls, fn };
}

describe('TokenCache', () => {
  it('admits a plaintext on its second sight, then answers from memory', () => {
    const c = new TokenCache(100);
    const { calls, fn } = counter();
    const pt = Buffer.from('abc');
    const t = fn(pt);
    calls.length = 0;
    expect(c.get(pt, fn)).toBe(t);
    expect(c.get(pt, fn)).toBe(t);
    expect(calls).toHaveLength(2);
    expect(c.count()).toBe(1);
    expect(c.get(Buffer.from('abc'), fn)).toBe(t);
    expect(calls).toHaveLength(2);
    expect([c.hits, c.misses]).toEqual([1, 2]);
  });

  it('one slot for every plaintext: each answer is still the token of the plaintext asked for', () => {
    const c = new TokenCache(1);
    const { fn } = counter();
    const want = (p: Buffer) => createHash('sha512').update(p).digest('base64url').repeat(8).slice(0, tokenTextLength(p.length));
    // Same lengths, prefixes of each other, empty, non-ASCII bytes.
    const pts = [Buffer.from('aaaa'), Buffer.from('aaab'), Buffer.from('aaa'), Buffer.from('aaaaa'), Buffer.alloc(0), Buffer.from([0xff, 0x00, 0x80])];
    for (let round = 0; round < 4; round++) for (const p of pts) expect(c.get(p, fn)).toBe(want(p));
    for (let i = 0; i < 2000; i++) {
      const p = randomBytes(i % 40);
      for (let k = 0; k < 3; k++) expect(c.get(p, fn)).toBe(want(p));
    }
    expect(c.hits).toBeGreaterThan(0);
  });

  it('holds at most `size` plaintexts, and none longer than maxPlaintext', () => {
    const c = new TokenCache(50, 16);
    const { fn } = counter();
    for (let i = 0; i < 1000; i++) for (let k = 0; k < 2; k++) c.get(Buffer.from(`v${i}`), fn);
    expect(c.count()).toBeLessThanOrEqual(50);
    expect(c.count()).toBeGreaterThan(0);
    const long = new TokenCache(50, 16);
    for (let k = 0; k < 3; k++) long.get(Buffer.alloc(17, 1), fn);
    expect(long.count()).toBe(0);
    expect(long.hits).toBe(0);
  });

  it('a token of the wrong length is not kept', () => {
    const c = new TokenCache(10);
    for (let k = 0; k < 3; k++) expect(c.get(Buffer.from('x'), () => 'short')).toBe('short');
    expect(c.count()).toBe(0);
  });

  it('size 0 keeps nothing; clear() forgets everything and zeroes what it held', () => {
    const off = new TokenCache(0);
    const { calls, fn } = counter();
    for (let i = 0; i < 3; i++) off.get(Buffer.from('x'), fn);
    expect(calls).toHaveLength(3);
    expect(off.enabled).toBe(false);
    const c = new TokenCache(10);
    const secret = Buffer.from('a token hash worth hiding');
    for (let i = 0; i < 3; i++) c.get(secret, fn);
    expect(c.count()).toBe(1);
    const arena = (c as unknown as { arena: Buffer }).arena;
    expect(arena.includes(secret)).toBe(true);
    c.clear();
    expect(c.count()).toBe(0);
    expect(arena.every((b) => b === 0)).toBe(true);
    c.get(secret, fn);
    expect(c.count()).toBe(0); // the admission filter was cleared too: a first sight again
  });
});
