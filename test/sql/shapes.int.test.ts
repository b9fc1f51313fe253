// Plans reused by shape, end to end: a client that interpolates its values
// (simple protocol, a new text per value, as Django with psycopg2) gets plans
// rebased from one analysis per shape, and every value still lands encrypted
// (deterministically for a searchable column), every lookup finds its row.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { column, table } from '../helpers/encrypted-proxy.js';
import { startSearchableProxy, type SearchableProxy } from '../searchable/proxy-setup.js';

const PREFIX = 'cmek:v1:';

let db: TestDb;
let proxy: SearchableProxy;
let app: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase('shapes');
  await db.client.query('CREATE TABLE tok (id int PRIMARY KEY, token_hash text UNIQUE, secret text, note text)');
  proxy = await startSearchableProxy({ encrypted: [table('tok', [column('token_hash', { searchable: true }), 'secret'])] });
  app = new pg.Client(proxy.via(db.url));
  await app.connect();
});

afterAll(async () => {
  await app?.end();
  await proxy?.close();
  await db?.drop();
});

const hash = (i: number) => `h-${i}-${'x'.repeat(i % 7)}`;
/** A secret with a quote, a backslash and non-ASCII text, spelled differently by parity. */
const secret = (i: number) => `s'${i}\\é`;
const spell = (i: number) => (i % 2 === 0 ? `'${secret(i).replaceAll("'", "''")}'` : `E'${secret(i).replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`);

it('literal writes and lookups of one shape are rebased, encrypted and found', async () => {
  const analyzer = proxy.layer.analyzer(db.name);
  const before = analyzer.stats.shapeHits;
  for (let i = 1; i <= 40; i++) {
    await app.query(`/* request ${i}: it's */ INSERT INTO tok (id, token_hash, secret, note) VALUES (${i}, '${hash(i)}', ${spell(i)}, 'n${i}') -- ${i}`);
  }
  const stored = await db.client.query<{ id: number; token_hash: string; secret: string; note: string }>('SELECT * FROM tok ORDER BY id');
  expect(stored.rows).toHaveLength(40);
  for (const r of stored.rows) {
    expect(r.token_hash.startsWith(PREFIX) && r.secret.startsWith(PREFIX)).toBe(true);
    expect(await proxy.keyring.decrypt(r.secret)).toBe(secret(r.id));
    expect(await proxy.keyring.decrypt(r.token_hash)).toBe(hash(r.id));
    expect(r.note).toBe(`n${r.id}`);
  }
  for (let i = 1; i <= 40; i++) {
    const { rows } = await app.query(`SELECT "tok"."id", "tok"."secret" FROM "tok" WHERE "tok"."token_hash" = '${hash(i)}' LIMIT 21`);
    expect(rows).toEqual([{ id: i, secret: secret(i) }]);
  }
  const many = await app.query(`SELECT id FROM tok WHERE token_hash IN ('${hash(3)}', '${hash(5)}') ORDER BY id; UPDATE tok SET secret = 'new' WHERE token_hash = '${hash(7)}'`);
  expect((many as unknown as pg.QueryResult[])[0]!.rows).toEqual([{ id: 3 }, { id: 5 }]);
  expect((await app.query(`SELECT secret FROM tok WHERE token_hash = '${hash(7)}'`)).rows).toEqual([{ secret: 'new' }]);
  // Only the first two texts of each shape (two INSERT spellings, one lookup) were parsed.
  expect(analyzer.stats.shapeHits - before).toBeGreaterThanOrEqual(74);
});
