// The bounded caches on the proxy's hot path (statement analyses, statement
// shapes, decrypted values, DEKs): ClockCache against the usual JS LRU, a Map
// in insertion order with delete + set on every hit and keys().next() for the
// oldest (what those caches were before). Two patterns, each in a full cache:
//   hit:  the same key read again and again (a statement executed in a loop);
//   miss: a new key each time, evicting one (distinct literals, uniform reads).
// And the analyzer's own hit: a statement text found again in a full text cache.
// Run: npx tsc -p tsconfig.json && node dist/bench/cache.js [iterations]
import { pathToFileURL } from 'node:url';
import { ClockCache } from '../src/cache/clock-cache.js';
import { initSql, SqlAnalyzer } from '../src/sql/index.js';

interface Cache {
  get(k: string): number | undefined;
  set(k: string, v: number): void;
}

/** The pattern the caches used before: move to the newest end on a hit, evict the oldest by insertion order. */
class MapLru implements Cache {
  private readonly m = new Map<string, number>();
  constructor(private readonly max: number) {}
  get(k: string): number | undefined {
    const v = this.m.get(k);
    if (v !== undefined) {
      this.m.delete(k);
      this.m.set(k, v);
    }
    return v;
  }
  set(k: string, v: number): void {
    this.m.delete(k);
    this.m.set(k, v);
    if (this.m.size > this.max) this.m.delete(this.m.keys().next().value!);
  }
}

const key = (i: number) => `SELECT "t"."id", "t"."secret" FROM "t" WHERE "t"."id" = ${i} LIMIT 21`;

function nsPerOp(n: number, fn: (i: number) => void): number {
  for (let i = 0; i < Math.min(n, 20_000); i++) fn(i); // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(i);
  return Number(process.hrtime.bigint() - t0) / n;
}

function fill(c: Cache, size: number): void {
  for (let i = 0; i < size; i++) c.set(key(i), i);
}

export async function runCacheBench(iterations = 200_000): Promise<{ label: string; map: number; clock: number }[]> {
  const out: { label: string; map: number; clock: number }[] = [];
  for (const size of [256, 2048, 10_000]) {
    const make = (): [Cache, Cache] => [new MapLru(size), new ClockCache<string, number>({ maxEntries: size })];
    const hit = make().map((c) => {
      fill(c, size);
      const hot = key(7);
      // A fresh string per read, as a decoded message gives.
      return nsPerOp(iterations, () => c.get(hot.slice(0)));
    });
    let next = size;
    const miss = make().map((c) => {
      fill(c, size);
      return nsPerOp(iterations / 4, () => c.set(key(next++), 1));
    });
    out.push({ label: `${size} entries, hit on one hot key`, map: hit[0]!, clock: hit[1]! });
    out.push({ label: `${size} entries, miss + evict`, map: miss[0]!, clock: miss[1]! });
  }
  return out;
}

/** The analyzer's text-cache hit, with its cache full of other statements (what an app with many statements has). */
export async function analyzerHit(iterations = 200_000): Promise<number> {
  await initSql();
  const a = new SqlAnalyzer({
    tables: [{ schema: 'public', table: 't', columns: [{ column: 'secret', searchable: false, onDecryptError: 'error', encryptEmpty: false }] }],
    columnsOf: () => ['id', 'secret'],
  });
  for (let i = 0; i < 2048; i++) a.analyze(key(i));
  const text = Buffer.from(key(7));
  return nsPerOp(iterations, () => a.analyze(text));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const n = Number(process.argv[2] ?? 200_000);
  console.log(`${'pattern'.padEnd(36)} ${'Map LRU ns/op'.padStart(14)} ${'ClockCache'.padStart(11)} ${'ratio'.padStart(7)}   (Node ${process.version})`);
  for (const r of await runCacheBench(n)) {
    console.log(`${r.label.padEnd(36)} ${r.map.toFixed(0).padStart(14)} ${r.clock.toFixed(0).padStart(11)} ${(r.map / r.clock).toFixed(1).padStart(6)}×`);
  }
  console.log(`SqlAnalyzer text-cache hit, 2,048 cached statements: ${(await analyzerHit(n)).toFixed(0)} ns/op`);
}
