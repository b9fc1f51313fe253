import { describe, expect, test } from 'vitest';
import { ClockCache } from '../../src/cache/clock-cache.js';

describe('ClockCache', () => {
  test('bounded by entries: an entry read since it went in gets a second chance', () => {
    const evicted: string[] = [];
    const c = new ClockCache<string, number>({ maxEntries: 3, onEvict: (k) => evicted.push(k) });
    c.set('a', 1);
    c.set('b', 2);
    c.set('c', 3);
    expect(c.get('a')).toBe(1);
    c.set('d', 4); // a was read: b goes
    expect(evicted).toEqual(['b']);
    expect([...c.entries()].map(([k]) => k).sort()).toEqual(['a', 'c', 'd']);
    c.set('e', 5); // a's chance was used up by the last pass; c was never read
    expect(evicted).toEqual(['b', 'c']);
    c.set('f', 6);
    expect(evicted).toEqual(['b', 'c', 'a']);
    expect(c.size).toBe(3);
  });

  test('a hot key read over and over stays, whatever else comes and goes', () => {
    const c = new ClockCache<string, number>({ maxEntries: 8 });
    c.set('hot', 0);
    for (let i = 0; i < 1000; i++) {
      expect(c.get('hot')).toBe(0);
      c.set(`cold${i}`, i);
    }
    expect(c.size).toBe(8);
    expect(c.peek('hot')).toBe(0);
  });

  test('set replaces in place and reports the old value; delete frees a slot that is reused', () => {
    const evicted: [string, number][] = [];
    const c = new ClockCache<string, number>({ maxEntries: 2, onEvict: (k, v) => evicted.push([k, v]) });
    c.set('a', 1);
    c.set('a', 2);
    expect(evicted).toEqual([['a', 1]]);
    c.set('b', 3);
    expect(c.delete('a')).toBe(true);
    expect(c.delete('a')).toBe(false);
    expect(evicted).toEqual([['a', 1], ['a', 2]]);
    c.set('c', 4); // into a's slot: nothing evicted
    expect(evicted).toHaveLength(2);
    expect(c.get('b')).toBe(3);
    expect(c.get('c')).toBe(4);
  });

  test('bounded by weight: older entries go until the sum fits; an entry heavier than the bound is not kept', () => {
    const evicted: string[] = [];
    const c = new ClockCache<string, string>({ maxEntries: 100, maxWeight: 10, weigh: (_k, v) => v.length, onEvict: (k) => evicted.push(k) });
    c.set('a', 'xxxx');
    c.set('b', 'xxxx');
    expect(c.totalWeight).toBe(8);
    c.set('c', 'xxxx');
    expect(evicted).toEqual(['a']);
    expect(c.totalWeight).toBe(8);
    c.set('b', 'x'); // reweighed; its old value is reported
    expect(c.totalWeight).toBe(5);
    c.set('big', 'x'.repeat(11));
    expect(c.has('big')).toBe(false);
    expect(evicted).toEqual(['a', 'b', 'big']);
    c.set('d', 'xxxxxx'); // 1 + 4 + 6 > 10: c goes (b was marked by its own set)
    expect(evicted).toEqual(['a', 'b', 'big', 'c']);
    expect([...c.entries()].map(([k]) => k).sort()).toEqual(['b', 'd']);
    expect(c.totalWeight).toBe(7);
  });

  test('the entry being set is never the one its own weight evicts', () => {
    const c = new ClockCache<string, string>({ maxEntries: 4, maxWeight: 10, weigh: (_k, v) => v.length });
    c.set('a', 'xxx');
    c.set('b', 'xxx');
    c.set('a', 'xxxxxxxxx'); // 9 + 3 > 10: b goes, a stays
    expect(c.has('a')).toBe(true);
    expect(c.has('b')).toBe(false);
    expect(c.totalWeight).toBe(9);
  });

  test('clear reports every entry and starts over; size 0 keeps nothing', () => {
    const evicted: string[] = [];
    const c = new ClockCache<string, number>({ maxEntries: 4, onEvict: (k) => evicted.push(k) });
    for (const k of ['a', 'b', 'c']) c.set(k, 1);
    c.clear();
    expect(evicted.sort()).toEqual(['a', 'b', 'c']);
    expect(c.size).toBe(0);
    for (const k of ['d', 'e', 'f', 'g', 'h']) c.set(k, 1);
    expect(c.size).toBe(4);

    const none: string[] = [];
    const z = new ClockCache<string, number>({ maxEntries: 0, onEvict: (k) => none.push(k) });
    z.set('a', 1);
    expect(z.get('a')).toBeUndefined();
    expect(none).toEqual(['a']);
  });

  test('a bound as large as the config allows allocates nothing up front and grows with its entries', () => {
    const c = new ClockCache<number, number>({ maxEntries: Number.MAX_SAFE_INTEGER });
    for (let i = 0; i < 10_000; i++) c.set(i, i);
    expect(c.size).toBe(10_000);
    for (let i = 0; i < 10_000; i += 997) expect(c.get(i)).toBe(i);
  });

  test('matches a reference model under random operations (size, membership, weights)', () => {
    let seed = 42;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const live = new Map<number, number>();
    const c = new ClockCache<number, number>({
      maxEntries: 50,
      maxWeight: 400,
      weigh: (_k, v) => v,
      onEvict: (k, v) => {
        if (live.get(k) === v) live.delete(k);
      },
    });
    for (let i = 0; i < 20_000; i++) {
      const k = rnd(200);
      const op = rnd(10);
      if (op < 5) {
        const v = 1 + rnd(20);
        c.set(k, v);
        live.set(k, v);
      } else if (op < 9) {
        expect(c.get(k)).toBe(live.get(k));
      } else {
        c.delete(k);
        live.delete(k);
      }
      expect(c.size).toBe(live.size);
      expect(c.size).toBeLessThanOrEqual(50);
      expect(c.totalWeight).toBeLessThanOrEqual(400);
    }
    let sum = 0;
    for (const [k, v] of c.entries()) {
      expect(live.get(k)).toBe(v);
      sum += v;
    }
    expect(c.totalWeight).toBe(sum);
  });
});
