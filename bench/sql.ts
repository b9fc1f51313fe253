// Cost of the SQL analysis per message: the textual prefilter (most traffic),
// a full analysis (cache miss), a cache hit, the raw parser for reference, and
// texts that differ only in their literals (one shape: rebased, not parsed).
// Run: npx tsc -p tsconfig.json && node dist/bench/sql.js [iterations]
import { pathToFileURL } from 'node:url';
import { parseSync } from 'libpg-query';
import type { TablePolicy } from '../src/config/types.js';
import { initSql, SqlAnalyzer } from '../src/sql/index.js';

const col = (column: string, searchable = false) => ({ column, searchable, onDecryptError: 'error' as const, encryptEmpty: false });
const TABLES: TablePolicy[] = [
  { schema: 'public', table: 'users', columns: [col('ssn'), col('email', true)] },
  { schema: 'public', table: 'app_model', columns: [col('secret'), col('token', true)] },
  { schema: 'billing', table: 'cards', columns: [col('number'), col('holder')] },
];
const CATALOG: Record<string, string[]> = {
  'public.users': ['id', 'name', 'ssn', 'email', 'created_at'],
  'public.app_model': ['id', 'secret', 'token', 'title'],
  'billing.cards': ['id', 'user_id', 'number', 'holder', 'expires'],
};

const unmappedShort = 'SELECT "orders"."id", "orders"."total" FROM "orders" WHERE "orders"."customer_id" = $1 ORDER BY "orders"."created" DESC LIMIT 21';
const unmappedLong = `SELECT ${Array.from({ length: 60 }, (_, i) => `"o"."c${i}"`).join(', ')} FROM "orders" "o" JOIN "lines" "l" ON "l"."order_id" = "o"."id" WHERE "o"."status" IN ('a', 'b', 'c') AND "o"."created" > now() - interval '7 days'`;
const insert = 'INSERT INTO "app_model" ("secret", "token", "title") VALUES (\'s3cr3t\', $1, \'Hello ✓\') RETURNING "app_model"."id"';
const update = 'UPDATE "users" SET "ssn" = $1, "name" = $2 WHERE "users"."id" = $3';
const select = 'SELECT "users"."id", "users"."ssn" FROM "users" WHERE "users"."email" = $1 LIMIT 21';
const bulk = `INSERT INTO users (name, ssn, email) VALUES ${Array.from({ length: 1000 }, (_, i) => `('n${i}', 'ssn-${i}', 'e${i}@x')`).join(', ')}`;
/** Django with psycopg2: the client interpolates values, so every text is new. */
const djangoLookup = (i: number) =>
  `SELECT "app_model"."id", "app_model"."secret", "app_model"."token" FROM "app_model" WHERE "app_model"."token" = '${1e18 + i * 7919}' LIMIT 21`;
const djangoInsert = (i: number) =>
  `INSERT INTO "app_model" ("secret", "token", "title") VALUES ('s3cr3t-${i}', 'tok-${i}', 'Hello ✓ ${i}') RETURNING "app_model"."id"`;
const djangoUpdate = (i: number) => `UPDATE "users" SET "ssn" = E'ssn\\\\${i}', "name" = 'it''s ${i}' WHERE "users"."id" = ${i}`;

function timeIt(label: string, n: number, fn: () => unknown): { label: string; usPerOp: number } {
  // Warm up until the JIT and the WASM tier-up settle (the first thousands of parses run unoptimised).
  const warmUntil = Date.now() + 250;
  for (let i = 0; i < n && Date.now() < warmUntil; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
  return { label, usPerOp: us };
}

export async function runSqlBench(iterations = 20000): Promise<{ label: string; usPerOp: number }[]> {
  await initSql();
  const columnsOf = (s: string, t: string) => CATALOG[`${s}.${t}`];
  const cached = new SqlAnalyzer({ tables: TABLES, columnsOf });
  // No cache of either kind: every call is a full analysis.
  const uncached = new SqlAnalyzer({ tables: TABLES, columnsOf, cacheSize: 0, shapeCacheSize: 0 });
  // Shapes only: the same text again is rebased, as a new text of its shape would be.
  const shapesOnly = new SqlAnalyzer({ tables: TABLES, columnsOf, cacheSize: 0 });
  const small = Math.max(10, Math.floor(iterations / 200));
  // V8 compiles the parser's WASM with a baseline tier first; optimised code arrives after
  // a few thousand parses (in the background). Measure the steady state.
  const warmUntil = Date.now() + 1500;
  while (Date.now() < warmUntil) for (const q of [insert, update, select, unmappedShort]) uncached.analyze(q);
  let n = 0;
  const results = [
    timeIt('prefilter, unmapped SELECT (110 B)', iterations, () => cached.analyze(unmappedShort)),
    timeIt(`prefilter, unmapped SELECT (${unmappedLong.length} B)`, iterations, () => cached.analyze(unmappedLong)),
    timeIt('prefilter, unmapped SELECT as Buffer', iterations, () => cached.analyze(Buffer.from(unmappedShort))),
    timeIt('parseSync only (INSERT, reference)', iterations / 4, () => parseSync(insert)),
    timeIt('analysis, INSERT with literals (miss)', iterations / 4, () => uncached.analyze(insert)),
    timeIt('analysis, UPDATE with params (miss)', iterations / 4, () => uncached.analyze(update)),
    timeIt('analysis, SELECT searchable predicate (miss)', iterations / 4, () => uncached.analyze(select)),
    timeIt('cache hit, INSERT with literals', iterations, () => cached.analyze(insert)),
    timeIt(`analysis, 1000-row INSERT, 2000 literals (${(bulk.length / 1024).toFixed(0)} KiB, miss)`, small, () => uncached.analyze(bulk)),
    timeIt('analysis, Django literal lookup (miss)', iterations / 4, () => uncached.analyze(djangoLookup(n++))),
    timeIt('one shape, distinct texts: Django literal lookup', iterations, () => cached.analyze(djangoLookup(n++))),
    timeIt('one shape, distinct texts: INSERT with 3 literals', iterations, () => cached.analyze(djangoInsert(n++))),
    timeIt('one shape, distinct texts: UPDATE, E-string, number', iterations, () => cached.analyze(djangoUpdate(n++))),
    timeIt('one shape: 1000-row INSERT, 2000 literals (rebased)', small * 4, () => shapesOnly.analyze(bulk)),
  ];
  return results;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const n = Number(process.argv[2] ?? 20000);
  for (const r of await runSqlBench(n)) console.log(`${r.label.padEnd(62)} ${r.usPerOp.toFixed(2).padStart(9)} µs/op`);
}
