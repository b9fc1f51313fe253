import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DekCache, DekWriter, type WriteDek } from '../../src/crypto/dek-cache.js';
import { FernetKey } from '../../src/crypto/fernet.js';
import { SingleFlight } from '../../src/crypto/single-flight.js';

const zeroed = (k: FernetKey) => k.signingKey.every((b) => b === 0) && k.encryptionKey.every((b) => b === 0);
const fresh = () => new FernetKey(randomBytes(32));

describe('DekCache (read side)', () => {
  it('is bounded: an entry not read since it went in goes first and is zeroed', () => {
    const c = new DekCache(3, 0);
    const keys = [fresh(), fresh(), fresh(), fresh()];
    keys.slice(0, 3).forEach((k, i) => c.set(`k${i}`, k));
    expect(c.get('k0')).toBe(keys[0]); // k0 now most recent; k1 is the LRU
    c.set('k3', keys[3]!);
    expect(c.size).toBe(3);
    expect(c.get('k1')).toBeUndefined();
    expect(zeroed(keys[1]!)).toBe(true);
    expect([keys[0], keys[2], keys[3]].some((k) => zeroed(k!))).toBe(false);
    expect(c.stats()).toEqual({ size: 3, hits: 1, misses: 1, evictions: 1 });
  });

  it('evicts entries not read since the last pass first, through repeated hits, evictions and re-insertion', () => {
    const c = new DekCache(3, 0);
    const k = Array.from({ length: 6 }, fresh);
    c.set('a', k[0]!);
    c.set('b', k[1]!);
    c.set('c', k[2]!);
    for (let i = 0; i < 5; i++) expect(c.get('c')).toBe(k[2]); // already newest: order unchanged
    expect(c.get('a')).toBe(k[0]); // order b, c, a
    c.set('d', k[3]!); // evicts b
    expect(c.get('b')).toBeUndefined();
    expect(c.get('c')).toBe(k[2]); // order a, d, c
    c.set('e', k[4]!); // evicts a
    expect(c.get('a')).toBeUndefined();
    c.set('c', k[5]!); // replaces the newest-but-one: order d, e, c
    c.set('f', fresh()); // evicts d
    expect([c.get('d'), c.get('e'), c.get('c')]).toEqual([undefined, k[4], k[5]]);
    expect(zeroed(k[2]!) && zeroed(k[3]!)).toBe(true);
  });

  it('holds exactly maxEntries after many inserts, zeroing all the others', () => {
    const c = new DekCache(100, 0);
    const keys = Array.from({ length: 1000 }, fresh);
    keys.forEach((k, i) => c.set(String(i), k));
    expect(c.size).toBe(100);
    expect(keys.slice(0, 900).every(zeroed)).toBe(true);
    expect(keys.slice(900).some(zeroed)).toBe(false);
  });

  it('expires entries after the TTL (injectable clock) and zeroes them', () => {
    let now = 1_000_000;
    const c = new DekCache(10, 60, () => now);
    const k = fresh();
    c.set('a', k);
    now += 59_999;
    expect(c.get('a')).toBe(k);
    now += 1;
    expect(c.get('a')).toBeUndefined();
    expect(zeroed(k)).toBe(true);
    expect(c.size).toBe(0);
  });

  it('replacing an id zeroes the old key', () => {
    const c = new DekCache(10, 0);
    const [a, b] = [fresh(), fresh()];
    c.set('x', a);
    c.set('x', b);
    expect(zeroed(a)).toBe(true);
    expect(c.get('x')).toBe(b);
  });

  it('size 0 disables caching: the caller keeps ownership', () => {
    const c = new DekCache(0, 0);
    const k = fresh();
    expect(c.enabled).toBe(false);
    expect(c.set('a', k)).toBe(false);
    expect(zeroed(k)).toBe(false);
    expect(c.get('a')).toBeUndefined();
  });

  it('clear() zeroes everything', () => {
    const c = new DekCache(10, 0);
    const keys = [fresh(), fresh()];
    keys.forEach((k, i) => c.set(String(i), k));
    c.clear();
    expect(keys.every(zeroed)).toBe(true);
    expect(c.size).toBe(0);
  });
});

describe('DekWriter (write side)', () => {
  const dek = (createdAt: number, uses = 1): WriteDek => ({ key: fresh(), header: Buffer.from('h'), createdAt, uses, tag: 1, kekId: Buffer.from('k') });

  it('reuses one DEK for at most maxUses values, then asks for a fresh one and zeroes the old', () => {
    const w = new DekWriter({ maxAgeSeconds: 3600, maxUses: 3 }, () => 0);
    expect(w.reuses).toBe(true);
    expect(w.take()).toBeUndefined();
    const d = dek(0); // its first use counted by whoever generated it
    w.install(d);
    expect(w.take()).toBe(d);
    expect(w.take()).toBe(d);
    expect(d.uses).toBe(3);
    expect(w.take()).toBeUndefined();
    expect(zeroed(d.key)).toBe(true);
  });

  it('retires a DEK once it is maxAgeSeconds old (injectable clock)', () => {
    let now = 0;
    const w = new DekWriter({ maxAgeSeconds: 10, maxUses: 1_000_000 }, () => now);
    const d = dek(0);
    w.install(d);
    now = 9_999;
    expect(w.take()).toBe(d);
    now = 10_000;
    expect(w.take()).toBeUndefined();
    expect(zeroed(d.key)).toBe(true);
  });

  it('installing a new DEK zeroes the previous one', () => {
    const w = new DekWriter({ maxAgeSeconds: 10, maxUses: 10 }, () => 0);
    const [a, b] = [dek(0), dek(0)];
    w.install(a);
    w.install(b);
    expect(zeroed(a.key)).toBe(true);
    expect(w.take()).toBe(b);
  });

  it.each([
    { maxAgeSeconds: 0, maxUses: 100 },
    { maxAgeSeconds: 60, maxUses: 1 },
    { maxAgeSeconds: 60, maxUses: 0 },
  ])('no reuse for %o', (policy) => {
    const w = new DekWriter(policy, () => 0);
    expect(w.reuses).toBe(false);
    w.install(dek(0));
    expect(w.take()).toBeUndefined();
  });
});

describe('SingleFlight', () => {
  it('shares one in-flight call per id and forgets it once settled (keep 0)', async () => {
    const sf = new SingleFlight<number>();
    let calls = 0;
    const make = () => new Promise<number>((r) => setTimeout(() => r(++calls), 1));
    const [a, b] = await Promise.all([sf.run('x', make), sf.run('x', make)]);
    expect([a, b, calls]).toEqual([1, 1, 1]);
    expect(await sf.run('x', make)).toBe(2);
  });

  it('remembers successes up to its bound, never failures', async () => {
    const sf = new SingleFlight<string>(2);
    let calls = 0;
    const ok = (v: string) => async () => {
      calls++;
      return v;
    };
    await sf.run('a', ok('a'));
    await sf.run('a', ok('a'));
    expect(calls).toBe(1);
    await expect(sf.run('f', () => Promise.reject(new Error('down')))).rejects.toThrow('down');
    await Promise.resolve();
    expect(await sf.run('f', ok('up'))).toBe('up');
    await sf.run('c', ok('c')); // bound 2: 'a' is dropped
    await sf.run('a', ok('a'));
    expect(calls).toBe(4);
  });
});
