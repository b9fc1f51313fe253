// The decrypted-value cache's ring: bounds (entries and bytes), second chance,
// expiry, wrap-around and growth, wiping, and a long random run against a model.
import { describe, expect, it } from 'vitest';
import { ValueCache } from '../../src/encryption/value-cache.js';

/** An envelope-like value: the cache hashes 8 characters before the last 4, as in a token's MAC text. */
function env(i: number, pad = 200): Buffer {
  const mac = `${i.toString(36).padStart(8, '0')}`;
  return Buffer.from(`cmek:v1:${'h'.repeat(pad)}|nonce|${mac}${'x'.repeat(i % 7)}==ab`, 'latin1');
}
const pt = (i: number) => Buffer.from(`plaintext-${i}`);
const get = (c: ValueCache, v: Buffer) => c.getAt(v, 0, v.length)?.toString();

describe('ValueCache', () => {
  it('serves each value its own plaintext, found in place inside a larger buffer', () => {
    const c = new ValueCache({ size: 100, ttlMs: 0 });
    for (let i = 0; i < 50; i++) c.set(env(i), pt(i));
    for (let i = 0; i < 50; i++) {
      const frame = Buffer.concat([Buffer.from('lead'), env(i), Buffer.from('trail')]);
      expect(c.getAt(frame, 4, 4 + env(i).length)?.toString()).toBe(`plaintext-${i}`);
      expect(c.find(frame, 4, 4 + env(i).length)).toBeGreaterThanOrEqual(0);
      expect(c.foundLength).toBe(pt(i).length);
    }
    expect(get(c, env(50))).toBeUndefined();
  });

  it('a value that differs anywhere, or in length, is not a hit', () => {
    const c = new ValueCache({ size: 10, ttlMs: 0 });
    const v = env(1);
    c.set(v, pt(1));
    for (const at of [0, 8, 100, v.length - 1]) {
      const w = Buffer.from(v);
      w[at] ^= 1;
      expect(get(c, w)).toBeUndefined();
    }
    expect(c.getAt(v, 0, v.length - 1)).toBeUndefined();
    expect(get(c, v)).toBe('plaintext-1');
  });

  it('holds at most `size` entries, oldest out first', () => {
    const c = new ValueCache({ size: 3, ttlMs: 0 });
    for (let i = 0; i < 5; i++) c.set(env(i), pt(i));
    expect([0, 1, 2, 3, 4].map((i) => get(c, env(i)))).toEqual([undefined, undefined, 'plaintext-2', 'plaintext-3', 'plaintext-4']);
  });

  it('a hit near the tail moves the value to the newest end (a hot value outlives a scan)', () => {
    const c = new ValueCache({ size: 8, ttlMs: 0 });
    c.set(env(0), pt(0));
    for (let i = 1; i < 200; i++) {
      c.set(env(i), pt(i)); // a scan of cold values
      expect(get(c, env(0))).toBe('plaintext-0'); // read again and again
    }
    expect(get(c, env(1))).toBeUndefined();
  });

  it('is bounded in bytes: the ring wraps around, values never straddle its end, and big values are not kept', () => {
    const c = new ValueCache({ size: 1, ttlMs: 0 }); // 64 KiB ring, entries up to 8 KiB
    const big = env(7, 9000);
    c.set(big, pt(7));
    expect(get(c, big)).toBeUndefined();
    const d = new ValueCache({ size: 100_000, ttlMs: 0 });
    // ~3,000-byte entries through a ring that starts at 64 KiB: growth, then (at 64 MiB) never a wrap here.
    for (let i = 0; i < 2000; i++) d.set(env(i, 3000), pt(i));
    for (let i = 0; i < 2000; i++) expect(get(d, env(i, 3000))).toBe(`plaintext-${i}`);
    // A 64 KiB ring that wraps many times with entries of mixed sizes.
    const w = new ValueCache({ size: 100, ttlMs: 0 });
    const live: number[] = [];
    for (let i = 0; i < 3000; i++) {
      const size = 100 + ((i * 7919) % 3000);
      w.set(env(i, size), pt(i));
      live.push(i);
      const v = get(w, env(i, size));
      expect(v).toBe(`plaintext-${i}`);
    }
    // The newest few always fit; whatever else is still found is right.
    let found = 0;
    for (let i = 0; i < 3000; i++) {
      const v = get(w, env(i, 100 + ((i * 7919) % 3000)));
      if (v !== undefined) {
        expect(v).toBe(`plaintext-${i}`);
        found++;
      }
    }
    expect(found).toBeGreaterThan(5);
    expect(found).toBeLessThanOrEqual(100);
  });

  it('expires entries after ttlMs', () => {
    let now = 1000;
    const c = new ValueCache({ size: 10, ttlMs: 500, now: () => now });
    c.set(env(1), pt(1));
    now = 1400;
    expect(get(c, env(1))).toBe('plaintext-1');
    now = 1600;
    expect(get(c, env(1))).toBeUndefined();
    expect(get(c, env(1))).toBeUndefined();
    c.set(env(1), pt(1));
    expect(get(c, env(1))).toBe('plaintext-1');
  });

  it('clear() forgets everything and wipes the plaintexts it held', () => {
    const c = new ValueCache({ size: 10, ttlMs: 0 });
    c.set(env(1), Buffer.from('secret-to-wipe'));
    const ring = c.bytes();
    expect(ring.includes('secret-to-wipe')).toBe(true);
    c.clear();
    expect(ring.includes('secret-to-wipe')).toBe(false);
    expect(get(c, env(1))).toBeUndefined();
    c.set(env(2), pt(2));
    expect(get(c, env(2))).toBe('plaintext-2');
  });

  it('size 0 keeps nothing', () => {
    const c = new ValueCache({ size: 0, ttlMs: 0 });
    c.set(env(1), pt(1));
    expect(get(c, env(1))).toBeUndefined();
  });

  it('accepts the largest size the config allows without allocating it up front', () => {
    const c = new ValueCache({ size: Number.MAX_SAFE_INTEGER, ttlMs: 0 });
    c.set(env(1), pt(1));
    expect(get(c, env(1))).toBe('plaintext-1');
    expect(c.bytes().length).toBeLessThanOrEqual(1 << 16);
  });

  it('many values in one set: the oldest leaves the index, the others stay right', () => {
    const c = new ValueCache({ size: 64, ttlMs: 0 }); // 16 sets of 8 ways
    // Values with the same hash characters land in one set.
    const same = (i: number) => Buffer.from(`cmek:v1:${'h'.repeat(150 + i)}|n|SAMEHASH==ab`, 'latin1');
    for (let i = 0; i < 12; i++) c.set(same(i), pt(i));
    const got = Array.from({ length: 12 }, (_, i) => get(c, same(i)));
    expect(got.slice(4)).toEqual(Array.from({ length: 8 }, (_, k) => `plaintext-${k + 4}`));
    expect(got.slice(0, 4)).toEqual([undefined, undefined, undefined, undefined]);
  });

  it('a long random run: every hit is the right plaintext, and the recent values are hits', () => {
    const c = new ValueCache({ size: 500, ttlMs: 0 });
    let seed = 42;
    const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
    const recent: number[] = [];
    let hits = 0;
    for (let k = 0; k < 20_000; k++) {
      const i = rnd(3) === 0 ? rnd(50) : rnd(5000); // a hot set and a long tail
      const v = env(i, 150 + (i % 40));
      const got = get(c, v);
      if (got !== undefined) {
        expect(got).toBe(`plaintext-${i}`);
        hits++;
      } else {
        c.set(v, pt(i));
        recent.push(i);
      }
      if (recent.length > 50) recent.shift();
    }
    for (const i of recent) expect(get(c, env(i, 150 + (i % 40)))).toBe(`plaintext-${i}`);
    // The hot 50 stay cached through the tail's churn: about a third of all reads hit.
    expect(hits).toBeGreaterThan(20_000 / 3 - 500);
  });
});
