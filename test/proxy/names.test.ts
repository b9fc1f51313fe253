import { describe, expect, test } from 'vitest';
import { NameMap } from '../../src/proxy/names.js';

describe('NameMap: the unnamed entry behaves as any other key', () => {
  test('NameMap', () => {
    const m = new NameMap<number | undefined>();
    expect(m.has('')).toBe(false);
    m.set('', undefined); // a stored undefined is still an entry
    expect(m.has('')).toBe(true);
    expect(m.size).toBe(1);
    m.set('', 1).set('s1', 2);
    expect([m.get(''), m.get('s1'), m.get('s2')]).toEqual([1, 2, undefined]);
    expect(m.size).toBe(2);
    expect(m.delete('')).toBe(true);
    expect(m.delete('')).toBe(false);
    expect(m.get('')).toBeUndefined();
    expect(m.delete('s1')).toBe(true);
    expect(m.size).toBe(0);
    m.set('', 3).set('x', 4);
    m.clear();
    expect([m.size, m.has(''), m.has('x')]).toEqual([0, false, false]);
  });
});
