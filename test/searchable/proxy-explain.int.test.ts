// 100k rows written through the proxy (COPY FROM STDIN), a btree on the
// searchable column: EXPLAIN through the proxy shows an index scan for the
// rewritten comparisons, in both protocols, with one candidate and with the
// padded slots of a prepared statement.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { column, table } from '../helpers/encrypted-proxy.js';
import { startSearchableProxy, type SearchableProxy } from './proxy-setup.js';

const N = Number(process.env.PGCMEK_SEARCHABLE_ROWS ?? 100_000);
const hash = (i: number) => `${i.toString(16).padStart(8, '0')}${'5f'.repeat(28)}`;
const indexed = /"Node Type":"(Index Scan|Index Only Scan|Bitmap Index Scan)"/;

let db: TestDb;
let proxy: SearchableProxy;
let client: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase('srchx');
  await db.client.query('CREATE TABLE api_token (id int PRIMARY KEY, token_hash text)');
  proxy = await startSearchableProxy({ encrypted: [table('api_token', [column('token_hash', { searchable: true })])] });
  const sql = postgres(proxy.via(db.url), { max: 1, onnotice: () => {} });
  try {
    const w = await sql`COPY api_token (id, token_hash) FROM STDIN`.writable();
    async function* rows() {
      for (let at = 1; at <= N; at += 1000) {
        let chunk = '';
        for (let i = at; i < at + 1000 && i <= N; i++) chunk += `${i}\t${hash(i)}\n`;
        yield chunk;
      }
    }
    await pipeline(Readable.from(rows()), w);
  } finally {
    await sql.end();
  }
  await db.client.query('CREATE INDEX api_token_token_hash_idx ON api_token (token_hash)');
  await db.client.query('ANALYZE api_token');
  client = new pg.Client(proxy.via(db.url));
  await client.connect();
}, 600_000);

afterAll(async () => {
  await client?.end();
  await proxy?.close();
  await db?.drop();
});

const plan = async (sql: string, params?: unknown[]) => JSON.stringify((await client.query(`EXPLAIN (FORMAT JSON) ${sql}`, params)).rows[0]['QUERY PLAN']);

describe(`EXPLAIN through the proxy on ${N} rows`, () => {
  it('every row was stored encrypted by COPY', async () => {
    const r = await db.client.query(`SELECT count(*)::int AS n, count(DISTINCT token_hash)::int AS d FROM api_token WHERE starts_with(token_hash, 'cmek:v1:')`);
    expect(r.rows[0]).toEqual({ n: N, d: N });
  });

  it.each([
    ['= $1 (extended: IN with padded slots)', 'SELECT id FROM api_token WHERE token_hash = $1', [hash(777)]],
    ['= literal (simple)', `SELECT id FROM api_token WHERE token_hash = '${hash(777)}'`, undefined],
    ['IN ($1, $2)', 'SELECT id FROM api_token WHERE token_hash IN ($1, $2)', [hash(777), hash(778)]],
    ['= ANY($1)', 'SELECT id FROM api_token WHERE token_hash = ANY($1)', [[hash(777), hash(778)]]],
  ])('%s uses the index', async (_, sql, params) => {
    const p = await plan(sql, params);
    expect(p).toMatch(indexed);
    expect(p).toContain('api_token_token_hash_idx');
  });

  it('the lookups find their rows', async () => {
    for (const i of [1, 777, N]) {
      expect((await client.query('SELECT id FROM api_token WHERE token_hash = $1', [hash(i)])).rows).toEqual([{ id: i }]);
      expect((await client.query(`SELECT id FROM api_token WHERE token_hash = '${hash(i)}'`)).rows).toEqual([{ id: i }]);
    }
  });
});
