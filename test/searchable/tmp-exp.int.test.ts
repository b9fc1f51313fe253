import { it } from 'vitest';
import { createTestDatabase } from '../helpers/db.js';
import { buf, column, newKek, replica, tokenHash } from './helpers.js';
it('variants', async () => {
  const db = await createTestDatabase('exp');
  const c = column('t', 'c');
  const r = await replica(db.url, [newKek()], [c]);
  const N = 100000;
  const plain = Array.from({ length: N }, (_, i) => tokenHash(i));
  const enc = plain.map((p) => r.keys.encryptDeterministic(c, buf(p)).toString());
  await db.client.query(`CREATE TABLE t (id int primary key, e text, p text)`);
  await db.client.query(`INSERT INTO t SELECT i - 1, ($1::text[])[i], ($2::text[])[i] FROM generate_series(1, ${N}) i`, [enc, plain]);
  await db.client.query(`CREATE UNIQUE INDEX ON t (e); CREATE UNIQUE INDEX ON t (p); ANALYZE t`);
  const M = 2000;
  const sample = Array.from({ length: M }, () => Math.floor(Math.random() * N));
  const variants: Record<string, (i: number) => { text: string; values: unknown[]; name: string }> = {
    plain: (i) => ({ name: 'a', text: 'SELECT id FROM t WHERE p = $1', values: [plain[i]] }),
    encEq: (i) => ({ name: 'b', text: 'SELECT id FROM t WHERE e = $1', values: [enc[i]] }),
    encAnyParam: (i) => ({ name: 'c', text: 'SELECT id FROM t WHERE e = ANY($1::text[])', values: [`{"${enc[i]}"}`] }),
    encArray2: (i) => ({ name: 'd', text: 'SELECT id FROM t WHERE e = ANY(ARRAY[$1, $2])', values: [enc[i], enc[i]] }),
    encIn2: (i) => ({ name: 'e', text: 'SELECT id FROM t WHERE e IN ($1, $2)', values: [enc[i], enc[i]] }),
    encIn3: (i) => ({ name: 'f', text: 'SELECT id FROM t WHERE e IN ($1, $2, $3)', values: [enc[i], enc[i], enc[i]] }),
  };
  const tot: Record<string, number> = {};
  for (let round = 0; round < 4; round++) {
    for (let at = 0; at < M; at += 100) {
      for (const [k, f] of Object.entries(variants)) {
        const t = performance.now();
        for (const i of sample.slice(at, at + 100)) await db.client.query(f(i));
        if (round > 0) tot[k] = (tot[k] ?? 0) + performance.now() - t;
      }
    }
  }
  for (const [k, v] of Object.entries(tot)) console.log(k, ((v * 1000) / (3 * M)).toFixed(1), 'µs  ratio', (tot.plain! / v).toFixed(2));
  for (const q of ['SELECT id FROM t WHERE e = ANY($1::text[])', 'SELECT id FROM t WHERE e IN ($1, $2)']) {
    await db.client.query(`PREPARE x AS ${q.replace('$1::text[]', '$1::text[]')}`);
    const args = q.includes('ANY') ? `'{"${enc[1]}"}'` : `'${enc[1]}', '${enc[1]}'`;
    for (let k = 0; k < 8; k++) await db.client.query(`EXECUTE x(${args})`);
    console.log(q, (await db.client.query(`SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'x'`)).rows);
    await db.client.query('DEALLOCATE x');
  }
  await r.close();
  await db.drop();
}, 900000);
