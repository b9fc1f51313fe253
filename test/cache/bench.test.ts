// Runs bench/cache.ts with fewer iterations and checks the order of magnitude
// the hot paths rely on: a hit on a hot key in a full cache stays O(1).
import { expect, test } from 'vitest';
import { analyzerHit, runCacheBench } from '../../bench/cache.js';

test('a hot key in a full cache: CLOCK hits stay flat where the Map LRU grows with the size', async () => {
  const results = await runCacheBench(20_000);
  for (const r of results) console.log(`${r.label.padEnd(36)} Map LRU ${r.map.toFixed(0).padStart(6)} ns  ClockCache ${r.clock.toFixed(0).padStart(5)} ns`);
  const hit = results.find((r) => r.label === '10000 entries, hit on one hot key')!;
  // Measured 700–1400× apart; generous for shared CI machines.
  expect(hit.clock * 20).toBeLessThan(hit.map);
  // An analyzer hit with a full text cache: measured 0.6 µs (3 µs with the Map LRU); a sanity bound only.
  expect(await analyzerHit(20_000)).toBeLessThan(20_000);
});
