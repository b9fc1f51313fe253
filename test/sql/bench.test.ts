// Prints the SQL analysis costs (bench/sql.ts with fewer iterations) and checks
// the orders of magnitude the proxy relies on.
import { expect, test } from 'vitest';
import { runSqlBench } from '../../bench/sql.js';

test('prefilter and analysis cost', async () => {
  const results = await runSqlBench(4000);
  for (const r of results) console.log(`${r.label.padEnd(62)} ${r.usPerOp.toFixed(2).padStart(9)} µs/op`);
  const by = (prefix: string) => results.find((r) => r.label.startsWith(prefix))!.usPerOp;
  // Generous bounds (shared CI machines): the prefilter and cache hits stay far below a parse.
  expect(by('prefilter, unmapped SELECT (110 B)')).toBeLessThan(by('analysis, INSERT'));
  expect(by('cache hit')).toBeLessThan(by('analysis, INSERT'));
});
