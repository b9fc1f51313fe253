import { it } from 'vitest';
import { textArrayLiteral } from '../../src/searchable/sql.js';
import { createTestDatabase } from '../helpers/db.js';
import { buf, column, newKek, replica, tokenHash } from './helpers.js';
it('variants', async () => {
  const db = await createTestDatabase('exp');
  const c = column('t', 'c');
  const r = await replica(db.url, [newKek()], [c]);
  console.log((await db.client.query(`SELECT datcollate, datctype, datlocprovider FROM pg_database WHERE datname = current_database()`)).rows);
  const N = 100000;
  const plain = Array.from({ length: N }, (_, i) => tokenHash(i));
  const enc = plain.map((p) => r.keys.encryptDeterministic(c, buf(p)).toString());
  await db.client.query(`CREATE TABLE t (id int primary key, e text, p text, ec text COLLATE "C")`);
  await db.client.query(`INSERT INTO t SELECT i - 1, ($1::text[])[i], ($2::text[])[i], ($1::text[])[i] FROM generate_series(1, ${N}) i`, [enc, plain]);
  await db.client.query(`CREATE UNIQUE INDEX ON t (e); CREATE UNIQUE INDEX ON t (p); CREATE UNIQUE INDEX ON t (ec); ANALYZE t`);
  console.log((await db.client.query(`SELECT relname, pg_relation_size(oid) AS sz FROM pg_class WHERE relname LIKE 't_%key' OR relname LIKE 't_%idx'`)).rows);
  const M = 2000;
  const sample = Array.from({ length: M }, () => Math.floor(Math.random() * N));
  const variants: Record<string, (i: number) => { text: string; values: unknown[]; name: string }> = {
    plain: (i) => ({ name: 'a', text: 'SELECT id FROM t WHERE p = $1', values: [plain[i]] }),
    encEq: (i) => ({ name: 'b', text: 'SELECT id FROM t WHERE e = $1', values: [enc[i]] }),
    encEqCand: (i) => ({ name: 'b2', text: 'SELECT id FROM t WHERE e = $1', values: [r.keys.equalityCandidates(c, buf(plain[i]!))[0]!.toString()] }),
    encAny: (i) => ({ name: 'c', text: 'SELECT id FROM t WHERE e = ANY($1::text[])', values: [textArrayLiteral(r.keys.equalityCandidates(c, buf(plain[i]!))).toString()] }),
    encAnyPre: (i) => ({ name: 'c2', text: 'SELECT id FROM t WHERE e = ANY($1::text[])', values: [`{"${enc[i]}"}`] }),
    encAnyC: (i) => ({ name: 'd', text: 'SELECT id FROM t WHERE ec = ANY($1::text[])', values: [`{"${enc[i]}"}`] }),
    plainAny: (i) => ({ name: 'e', text: 'SELECT id FROM t WHERE p = ANY($1::text[])', values: [`{"${plain[i]}"}`] }),
  };
  const tot: Record<string, number> = {};
  for (let round = 0; round < 3; round++) {
    for (let at = 0; at < M; at += 200) {
      for (const [k, f] of Object.entries(variants)) {
        const t = performance.now();
        for (const i of sample.slice(at, at + 200)) await db.client.query(f(i));
        if (round > 0) tot[k] = (tot[k] ?? 0) + performance.now() - t;
      }
    }
  }
  for (const [k, v] of Object.entries(tot)) console.log(k, ((v * 1000) / (2 * M)).toFixed(1), 'µs');
  await r.close();
  await db.drop();
}, 600000);
