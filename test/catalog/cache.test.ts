import { describe, expect, it } from 'vitest';
import { buildCatalog } from '../../src/catalog/build.js';
import { CatalogCache } from '../../src/catalog/cache.js';

const empty = () => buildCatalog([], []);

describe('CatalogCache', () => {
  it('keeps one catalog per database until invalidated', () => {
    const c = new CatalogCache();
    const a = empty();
    c.set('a', a);
    expect(c.get('a')).toBe(a);
    expect(c.get('b')).toBeUndefined();
    c.invalidate('a');
    expect(c.get('a')).toBeUndefined();
  });

  it('drops every entry of an older config generation', () => {
    const c = new CatalogCache(3);
    c.set('a', empty());
    c.set('b', empty());
    c.invalidateAll();
    expect(c.generation).toBe(4);
    expect(c.get('a')).toBeUndefined();
    expect(c.get('b')).toBeUndefined();
  });

  it('shares one load between concurrent misses', async () => {
    const c = new CatalogCache();
    let loads = 0;
    const load = async () => {
      loads++;
      await new Promise((r) => setTimeout(r, 10));
      return empty();
    };
    const [x, y] = await Promise.all([c.getOrLoad('a', load), c.getOrLoad('a', load)]);
    expect(x).toBe(y);
    expect(loads).toBe(1);
    expect(c.get('a')).toBe(x);
  });

  it('does not store a load that was in flight when its database was invalidated', async () => {
    const c = new CatalogCache();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const first = c.getOrLoad('a', async () => {
      await gate;
      return empty();
    });
    c.invalidate('a');
    const fresh = empty();
    const second = c.getOrLoad('a', async () => fresh);
    release();
    await first;
    expect(await second).toBe(fresh);
    expect(c.get('a')).toBe(fresh);
    c.invalidateAll();
    let g!: () => void;
    const stale = c.getOrLoad('a', () => new Promise((r) => (g = () => r(empty()))));
    c.invalidateAll();
    g();
    await stale;
    expect(c.get('a')).toBeUndefined();
  });

  it('expires entries after maxAgeMs', () => {
    let now = 1000;
    const c = new CatalogCache(0, { maxAgeMs: 500, now: () => now });
    c.set('a', empty());
    now += 400;
    expect(c.get('a')).toBeDefined();
    now += 200;
    expect(c.get('a')).toBeUndefined();
  });

  it('rejects failed loads without caching them', async () => {
    const c = new CatalogCache();
    await expect(c.getOrLoad('a', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    const ok = empty();
    expect(await c.getOrLoad('a', async () => ok)).toBe(ok);
  });
});
