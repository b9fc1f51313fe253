// Row comparisons on searchable columns through the proxy, in the simple and
// the extended protocol: refused with 0A000 naming the column (never a result
// computed against an unencrypted or half-encrypted row), the session stays
// usable, and the equivalent plain comparisons find the rows.
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { column, table } from '../helpers/encrypted-proxy.js';
import { startSearchableProxy, type SearchableProxy } from './proxy-setup.js';

let db: TestDb;
let proxy: SearchableProxy;
let client: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase('srow');
  await db.client.query(`
    CREATE TABLE t (id serial PRIMARY KEY, name text, other int, tok text, tok2 text);
    CREATE TABLE u (id serial PRIMARY KEY, other int, tok text);
  `);
  proxy = await startSearchableProxy({
    encrypted: [
      table('t', [column('tok', { searchable: true, keyGroup: 'g' }), column('tok2', { searchable: true })]),
      table('u', [column('tok', { searchable: true, keyGroup: 'g' })]),
    ],
  });
  client = new pg.Client(proxy.via(db.url));
  await client.connect();
  await client.query(`INSERT INTO t (name, other, tok, tok2) VALUES ('a', 1, 'x', 'p'), ('b', 2, 'y', 'q'), ('c', 3, NULL, 'r')`);
  await client.query(`INSERT INTO u (other, tok) VALUES (1, 'x'), (2, 'zz')`);
});

afterAll(async () => {
  await client?.end();
  await proxy?.close();
  await db?.drop();
});

const names = async (sql: string, params?: unknown[]) => (await client.query(sql, params)).rows.map((r: { name: string }) => r.name).sort();

const SIMPLE = [
  `SELECT name FROM t WHERE (tok, other) = ('x', 1)`,
  `SELECT name FROM t WHERE (other, tok) = (1, 'x')`,
  // Both members searchable: the first value used to stay unencrypted and the row matched nothing.
  `SELECT name FROM t WHERE (tok, tok2) = ('x', 'p')`,
  `SELECT name FROM t WHERE ROW(tok, other) = ROW('x', 1)`,
  `SELECT name FROM t WHERE (tok, other) <> ('x', 1)`,
  `SELECT name FROM t WHERE (tok, other) IS NOT DISTINCT FROM ('x', 1)`,
  `SELECT name FROM t WHERE (tok, other) IN (('x', 1), ('y', 2))`,
  `SELECT name FROM t WHERE (tok, other) NOT IN (('x', 1))`,
  `UPDATE t SET name = name WHERE (tok, other) = ('x', 1)`,
];

const EXTENDED: [string, unknown[]][] = [
  [`SELECT name FROM t WHERE (tok, other) = ($1, $2)`, ['x', 1]],
  [`SELECT name FROM t WHERE (other, tok) = ($1, $2)`, [1, 'x']],
  [`SELECT name FROM t WHERE (tok, tok2) = ($1, $2)`, ['x', 'p']],
  [`SELECT name FROM t WHERE (tok, other) IN (($1, $2), ($3, $4))`, ['x', 1, 'y', 2]],
  [`SELECT name FROM t WHERE (tok, other) = ($1, 1)`, ['x']],
  [`SELECT name FROM t WHERE (tok, other) = ('x', $1)`, [1]],
];

async function expectRowRefusal(run: Promise<unknown>): Promise<void> {
  const err = (await run.then(
    () => undefined,
    (e: unknown) => e,
  )) as { code?: string; message?: string } | undefined;
  expect(err, 'the statement must be refused').toBeDefined();
  expect(err!.code).toBe('0A000');
  expect(err!.message).toMatch(/row comparison .* searchable column public\.t\.tok2?/);
}

describe('simple protocol', () => {
  it.each(SIMPLE)('refused: %s', async (sql) => {
    await expectRowRefusal(client.query(sql));
    expect(await names(`SELECT name FROM t WHERE tok = 'x' AND other = 1`)).toEqual(['a']);
  });

  it('inside a transaction: the refusal aborts it, as a server error would', async () => {
    await client.query('BEGIN');
    await expectRowRefusal(client.query(SIMPLE[0]!));
    await expect(client.query('SELECT 1')).rejects.toMatchObject({ code: '25P02' });
    await client.query('ROLLBACK');
  });

  it('nothing was written by the refused UPDATE', async () => {
    const { rows } = await db.client.query(`SELECT count(*)::int AS n FROM t WHERE tok LIKE 'cmek:v1:%'`);
    expect(rows[0].n).toBe(2);
  });
});

describe('extended protocol', () => {
  it.each(EXTENDED)('refused: %s', async (sql, params) => {
    await expectRowRefusal(client.query(sql, params));
    expect(await names(`SELECT name FROM t WHERE tok = $1 AND other = $2`, ['x', 1])).toEqual(['a']);
  });

  it('postgres.js (Parse/Describe/Bind in one batch) gets the refusal and keeps working', async () => {
    const sql = postgres(proxy.via(db.url), { max: 1, onnotice: () => {} });
    try {
      await expectRowRefusal(sql.unsafe(`SELECT name FROM t WHERE (tok, other) = ($1, $2)`, ['x', 1]));
      expect((await sql`SELECT name FROM t WHERE tok = ${'y'}`).map((r) => r.name)).toEqual(['b']);
    } finally {
      await sql.end();
    }
  });
});

describe('row forms that need no candidate list keep working', () => {
  it('a searchable member compared with NULL or the empty string', async () => {
    expect(await names(`SELECT name FROM t WHERE (tok, other) IS NOT DISTINCT FROM (NULL, 3)`)).toEqual(['c']);
    expect(await names(`SELECT name FROM t WHERE (tok, other) = (NULL, 3)`)).toEqual([]);
  });

  it('members of one key group compared with each other, also against a subquery', async () => {
    expect(await names(`SELECT t.name FROM t JOIN u ON (t.tok, t.other) = (u.tok, u.other)`)).toEqual(['a']);
    expect(await names(`SELECT name FROM t WHERE (tok, other) IN (SELECT tok, other FROM u)`)).toEqual(['a']);
  });

  it('a subquery whose encrypted column meets a plaintext member is refused, not an empty result', async () => {
    await expect(client.query(`SELECT name FROM t WHERE (other, name) IN (SELECT other, tok FROM u)`)).rejects.toMatchObject({ code: '0A000' });
    await expect(client.query(`SELECT name FROM t WHERE (other, tok2) IN (SELECT other, tok FROM u)`)).rejects.toMatchObject({
      code: '0A000',
      message: expect.stringMatching(/different keys/),
    });
  });
});
