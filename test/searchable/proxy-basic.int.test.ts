// Searchable columns through the proxy, with real clients on real Postgres:
// writes are deterministic (bind values, literals, COPY), every supported
// comparison finds its rows in both protocols, NULL keeps its meaning, unique
// indexes and ON CONFLICT (col) behave as on plaintext, joins match between
// columns of one key group, and a Describe never shows the added parameters.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { column, table } from '../helpers/encrypted-proxy.js';
import { startSearchableProxy, type SearchableProxy } from './proxy-setup.js';

const PREFIX = 'cmek:v1:';
const searchable = (name: string, extra: object = {}) => column(name, { searchable: true, ...extra });

let db: TestDb;
let proxy: SearchableProxy;
let client: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase('srchp');
  await db.client.query(`
    CREATE TABLE api_token (id serial PRIMARY KEY, name text, token_hash text UNIQUE);
    CREATE TABLE session_token (id serial PRIMARY KEY, token_hash text);
    CREATE TABLE audit (id serial PRIMARY KEY, token_ref text);
    CREATE TABLE other (id serial PRIMARY KEY, h text);
  `);
  proxy = await startSearchableProxy({
    encrypted: [
      table('api_token', [searchable('token_hash', { keyGroup: 'tokens' })]),
      table('session_token', [searchable('token_hash')]),
      table('audit', [searchable('token_ref', { keyGroup: 'tokens' })]),
      table('other', [searchable('h')]),
    ],
  });
  client = new pg.Client(proxy.via(db.url));
  await client.connect();
  for (const [name, hash] of [
    ['a', 'hash-a'],
    ['b', 'hash-b'],
    ['c', 'hash-c'],
    ['quote', "it's"],
  ]) {
    await client.query('INSERT INTO api_token (name, token_hash) VALUES ($1, $2)', [name, hash]);
  }
  await client.query(`INSERT INTO api_token (name, token_hash) VALUES ('lit', 'hash-lit'), ('null', NULL), ('empty', '')`);
});

afterAll(async () => {
  await client?.end();
  await proxy?.close();
  await db?.drop();
});

const names = async (sql: string, params?: unknown[]) =>
  (await client.query(sql, params)).rows.map((r: { name: string }) => r.name).sort();

describe('writes', () => {
  it('stores deterministic envelopes the keyring decrypts', async () => {
    const { rows } = await db.client.query(`SELECT name, token_hash FROM api_token WHERE name IN ('a', 'lit')`);
    for (const r of rows) {
      expect(r.token_hash.startsWith(PREFIX)).toBe(true);
      expect(await proxy.keyring.decrypt(r.token_hash)).toBe(r.name === 'a' ? 'hash-a' : 'hash-lit');
    }
    const again = proxy.keys(db.name).encryptDeterministic({ schema: 'public', table: 'api_token', column: 'token_hash' }, Buffer.from('hash-a'));
    expect(rows.find((r) => r.name === 'a').token_hash).toBe(again.toString());
    const nul = await db.client.query(`SELECT token_hash FROM api_token WHERE name IN ('null', 'empty') ORDER BY name`);
    expect(nul.rows.map((r) => r.token_hash)).toEqual(['', null]);
  });

  it('reads decrypt as for any encrypted column', async () => {
    const r = await client.query(`SELECT token_hash FROM api_token WHERE name = 'quote'`);
    expect(r.rows[0].token_hash).toBe("it's");
  });

  it('a unique index rejects a duplicate (23505), in both protocols', async () => {
    await expect(client.query('INSERT INTO api_token (name, token_hash) VALUES ($1, $2)', ['dup', 'hash-a'])).rejects.toMatchObject({ code: '23505' });
    await expect(client.query(`INSERT INTO api_token (name, token_hash) VALUES ('dup', 'hash-b')`)).rejects.toMatchObject({ code: '23505' });
  });

  it('INSERT … ON CONFLICT (col) DO UPDATE takes the conflict branch', async () => {
    const sql = 'INSERT INTO api_token (name, token_hash) VALUES ($1, $2) ON CONFLICT (token_hash) DO UPDATE SET name = EXCLUDED.name RETURNING id, name';
    const first = await client.query(sql, ['upsert-1', 'hash-upsert']);
    const second = await client.query(sql, ['upsert-2', 'hash-upsert']);
    expect(second.rows[0].id).toBe(first.rows[0].id);
    expect(await names(`SELECT name FROM api_token WHERE token_hash = 'hash-upsert'`)).toEqual(['upsert-2']);
    await client.query(`INSERT INTO api_token (name, token_hash) VALUES ('upsert-3', 'hash-upsert') ON CONFLICT (token_hash) DO NOTHING`);
    expect(await names(`SELECT name FROM api_token WHERE token_hash = $1`, ['hash-upsert'])).toEqual(['upsert-2']);
  });

  it('UPDATE … SET col = $1 WHERE col = $2, RETURNING the new value', async () => {
    await client.query(`INSERT INTO api_token (name, token_hash) VALUES ('rot', 'hash-old')`);
    const r = await client.query('UPDATE api_token SET token_hash = $1 WHERE token_hash = $2 RETURNING name, token_hash', ['hash-new', 'hash-old']);
    expect(r.rows).toEqual([{ name: 'rot', token_hash: 'hash-new' }]);
    expect(await names(`SELECT name FROM api_token WHERE token_hash = 'hash-new'`)).toEqual(['rot']);
    expect(await names(`SELECT name FROM api_token WHERE token_hash = 'hash-old'`)).toEqual([]);
  });

  it('copies ciphertext between columns of one key group, and refuses it between different keys', async () => {
    await client.query(`INSERT INTO audit (token_ref) SELECT token_hash FROM api_token WHERE name = 'c'`);
    expect((await client.query(`SELECT count(*)::int AS n FROM audit WHERE token_ref = 'hash-c'`)).rows[0].n).toBe(1);
    await expect(client.query(`INSERT INTO session_token (token_hash) SELECT token_hash FROM api_token WHERE name = 'c'`)).rejects.toMatchObject({ code: '0A000' });
  });

  it('COPY FROM STDIN encrypts deterministically', async () => {
    const sql = postgres(proxy.via(db.url), { max: 1, onnotice: () => {} });
    try {
      const w = await sql`COPY session_token (id, token_hash) FROM STDIN`.writable();
      await pipeline(Readable.from(['1\tcopied\n', '2\t\\N\n']), w);
      const r = await sql`SELECT id FROM session_token WHERE token_hash = ${'copied'}`;
      expect(r.map((x) => x.id)).toEqual([1]);
    } finally {
      await sql.end();
    }
    const stored = (await db.client.query('SELECT token_hash FROM session_token WHERE id = 1')).rows[0].token_hash;
    expect(stored.startsWith(PREFIX)).toBe(true);
  });
});

describe('comparisons, extended protocol (bind parameters)', () => {
  it.each([
    ['= $1', 'SELECT name FROM api_token WHERE token_hash = $1', ['hash-a'], ['a']],
    ['$1 = col', 'SELECT name FROM api_token WHERE $1 = token_hash', ['hash-b'], ['b']],
    ['qualified, cast', 'SELECT t.name FROM api_token t WHERE t.token_hash = $1::text', ['hash-c'], ['c']],
    ['CAST and parentheses', 'SELECT name FROM api_token WHERE (token_hash) = (CAST($1 AS text))', ['hash-a'], ['a']],
    ['a quote in the value', 'SELECT name FROM api_token WHERE token_hash = $1', ["it's"], ['quote']],
    ['IN ($1, $2)', 'SELECT name FROM api_token WHERE token_hash IN ($1, $2)', ['hash-a', 'hash-c'], ['a', 'c']],
    ['NOT IN', "SELECT name FROM api_token WHERE token_hash NOT IN ($1, $2) AND name IN ('a', 'b', 'c', 'lit')", ['hash-a', 'hash-c'], ['b', 'lit']],
    ['<> $1', "SELECT name FROM api_token WHERE token_hash <> $1 AND name IN ('a', 'b')", ['hash-a'], ['b']],
    ['= ANY($1)', 'SELECT name FROM api_token WHERE token_hash = ANY($1)', [['hash-a', 'hash-b', 'nope']], ['a', 'b']],
    ['= ANY($1::text[])', 'SELECT name FROM api_token WHERE token_hash = ANY($1::text[])', [['hash-lit']], ['lit']],
    ['<> ALL($1)', "SELECT name FROM api_token WHERE token_hash <> ALL($1) AND name IN ('a', 'b', 'c')", [['hash-a', 'hash-b']], ['c']],
    ['= ANY(ARRAY[$1, $2])', 'SELECT name FROM api_token WHERE token_hash = ANY(ARRAY[$1, $2])', ['hash-b', 'hash-c'], ['b', 'c']],
    ['with another parameter', 'SELECT name FROM api_token WHERE token_hash = $2 AND name = $1', ['a', 'hash-a'], ['a']],
    ['the parameter used elsewhere too', 'SELECT name FROM api_token WHERE token_hash = $1 OR name = $1', ['b'], ['b']],
    ['twice on the column', 'SELECT name FROM api_token WHERE token_hash = $1 OR token_hash IN ($1, $2)', ['hash-a', 'hash-b'], ['a', 'b']],
    ['no match', 'SELECT name FROM api_token WHERE token_hash = $1', ['hash-zzz'], []],
    ['empty string (kept empty)', 'SELECT name FROM api_token WHERE token_hash = $1', [''], ['empty']],
  ])('%s', async (_, sql, params, expected) => {
    expect(await names(sql, params)).toEqual(expected);
  });

  it('NULL parameters keep their meaning', async () => {
    expect(await names('SELECT name FROM api_token WHERE token_hash = $1', [null])).toEqual([]);
    expect(await names('SELECT name FROM api_token WHERE token_hash IS NOT DISTINCT FROM $1', [null])).toEqual(['null']);
    expect(await names('SELECT name FROM api_token WHERE token_hash IS NOT DISTINCT FROM $1', ['hash-a'])).toEqual(['a']);
    expect(await names(`SELECT name FROM api_token WHERE token_hash IS DISTINCT FROM $1 AND name IN ('a', 'null')`, [null])).toEqual(['a']);
    expect(await names(`SELECT name FROM api_token WHERE token_hash IS DISTINCT FROM $1 AND name IN ('a', 'null')`, ['hash-a'])).toEqual(['null']);
    expect(await names('SELECT name FROM api_token WHERE token_hash = ANY($1)', [[null, 'hash-c']])).toEqual(['c']);
    const r = await client.query('SELECT token_hash = $1 AS eq, token_hash IS NOT DISTINCT FROM $1 AS nd FROM api_token WHERE name = $2', ['hash-a', 'null']);
    expect(r.rows[0]).toEqual({ eq: null, nd: false });
  });

  it('named prepared statements are reused, with binary results', async () => {
    for (const [h, n] of [
      ['hash-a', 'a'],
      ['hash-b', 'b'],
      ['hash-a', 'a'],
    ]) {
      // `binary` (results in binary format) is a node-postgres option its types do not list.
      const q = { name: 'by_hash', text: 'SELECT name, token_hash FROM api_token WHERE token_hash = $1', values: [h], binary: true } as pg.QueryConfig;
      const r = await client.query<{ name: string; token_hash: string }>(q);
      expect(r.rows.map((x) => [x.name, x.token_hash])).toEqual([[n, h]]);
    }
  });

  it('one lookup text prepared under several names and unnamed, on two connections: each Parse gets its own name', async () => {
    // The rewritten Parse frame is built once per statement name and reused: names must never mix.
    const other = new pg.Client(proxy.via(db.url));
    await other.connect();
    try {
      const text = 'SELECT name FROM api_token WHERE token_hash = $1';
      for (let round = 0; round < 3; round++) {
        for (const [c, name, h, n] of [
          [client, 'lk1', 'hash-a', 'a'],
          [other, 'lk2', 'hash-b', 'b'],
          [client, undefined, 'hash-c', 'c'],
          [other, 'lk1', 'hash-b', 'b'],
          [client, 'lk2', 'hash-a', 'a'],
          [other, undefined, 'hash-a', 'a'],
        ] as const) {
          const r = await c.query<{ name: string }>(name ? { name: `${name}`, text, values: [h] } : { text, values: [h] });
          expect(r.rows.map((x) => x.name)).toEqual([n]);
        }
      }
      const held = await other.query<{ name: string }>("SELECT name FROM pg_prepared_statements WHERE name LIKE 'lk%' ORDER BY name");
      expect(held.rows.map((r) => r.name)).toEqual(['lk1', 'lk2']);
    } finally {
      await other.end();
    }
  });

  it('postgres.js (Describe of the statement) sees only its own parameters', async () => {
    const sql = postgres(proxy.via(db.url), { max: 1, onnotice: () => {} });
    try {
      const r = await sql`SELECT name FROM api_token WHERE token_hash = ${'hash-b'} AND name = ${'b'}`;
      expect(r.map((x) => x.name)).toEqual(['b']);
      const any = await sql`SELECT name FROM api_token WHERE token_hash = ANY(${sql.array(['hash-a', 'hash-c'])}) ORDER BY name`;
      expect(any.map((x) => x.name)).toEqual(['a', 'c']);
      const described = await sql`SELECT name FROM api_token WHERE token_hash IN (${'hash-a'}, ${'hash-c'})`.describe();
      expect(described.types).toHaveLength(2);
    } finally {
      await sql.end();
    }
  });
});

describe('comparisons, simple protocol (literals)', () => {
  it('the Django lookup', async () => {
    const r = await client.query(`SELECT "api_token"."id" FROM "api_token" WHERE "api_token"."token_hash" = 'hash-a' LIMIT 21`);
    expect(r.rows).toHaveLength(1);
  });

  it.each([
    ['= literal', `SELECT name FROM api_token WHERE token_hash = 'hash-b'`, ['b']],
    ['E-string with a quote', `SELECT name FROM api_token WHERE token_hash = E'it\\'s'`, ['quote']],
    ['IN (…)', `SELECT name FROM api_token WHERE token_hash IN ('hash-a', 'hash-lit')`, ['a', 'lit']],
    ['<>', `SELECT name FROM api_token WHERE token_hash <> 'hash-a' AND name IN ('a', 'c')`, ['c']],
    ['= ANY(ARRAY[…])', `SELECT name FROM api_token WHERE token_hash = ANY(ARRAY['hash-a', 'hash-b'])`, ['a', 'b']],
    ['IS NOT DISTINCT FROM', `SELECT name FROM api_token WHERE token_hash IS NOT DISTINCT FROM 'hash-c'`, ['c']],
    ['= NULL (never true)', `SELECT name FROM api_token WHERE token_hash = NULL`, []],
    ['IS NULL', `SELECT name FROM api_token WHERE token_hash IS NULL`, ['null']],
    ['two statements', `SELECT 1; SELECT name FROM api_token WHERE token_hash = 'hash-c'`, ['c']],
  ])('%s', async (_, sql, expected) => {
    const res = await client.query(sql);
    const last = Array.isArray(res) ? res[res.length - 1]! : res;
    expect(last.rows.map((r: { name: string }) => r.name).sort()).toEqual(expected);
  });

  it('UPDATE and DELETE by hash', async () => {
    await client.query(`INSERT INTO api_token (name, token_hash) VALUES ('tmp', 'hash-tmp')`);
    await client.query(`UPDATE api_token SET name = 'tmp2' WHERE token_hash = 'hash-tmp'`);
    expect(await names(`SELECT name FROM api_token WHERE token_hash = $1`, ['hash-tmp'])).toEqual(['tmp2']);
    const del = await client.query(`DELETE FROM api_token WHERE token_hash = $1`, ['hash-tmp']);
    expect(del.rowCount).toBe(1);
  });
});

describe('joins and refusals', () => {
  it('joins columns of one key group', async () => {
    await client.query(`INSERT INTO audit (token_ref) VALUES ($1), ('hash-b')`, ['hash-a']);
    // 'c' was copied into audit by an earlier test.
    const r = await client.query(`SELECT t.name FROM api_token t JOIN audit a ON a.token_ref = t.token_hash ORDER BY t.name`);
    expect(r.rows.map((x) => x.name)).toEqual(['a', 'b', 'c']);
    const sub = await client.query(`SELECT name FROM api_token WHERE token_hash IN (SELECT token_ref FROM audit) ORDER BY name`);
    expect(sub.rows.map((x) => x.name)).toEqual(['a', 'b', 'c']);
    const using = await client.query(`SELECT count(*)::int AS n FROM api_token JOIN audit ON audit.token_ref = api_token.token_hash WHERE api_token.token_hash = $1`, ['hash-b']);
    expect(using.rows[0].n).toBe(1);
  });

  it('refuses a join between columns with different keys (it could never match)', async () => {
    await expect(client.query(`SELECT 1 FROM api_token t JOIN session_token s ON s.token_hash = t.token_hash`)).rejects.toMatchObject({ code: '0A000' });
    await expect(client.query(`SELECT 1 FROM api_token t JOIN other o ON o.h = t.token_hash`)).rejects.toMatchObject({ code: '0A000' });
  });

  it('refuses a row comparison it cannot widen (extended protocol)', async () => {
    const err = (await client.query('SELECT 1 FROM api_token WHERE (name, token_hash) = ($1, $2)', ['a', 'hash-a']).catch((e: unknown) => e)) as { code?: string; message?: string };
    expect(err.code).toBe('0A000');
    expect(err.message).toContain('token_hash');
  });

  it.each([
    ['LIKE', `SELECT 1 FROM api_token WHERE token_hash LIKE 'hash%'`],
    ['<', `SELECT 1 FROM api_token WHERE token_hash < 'x'`],
    ['ORDER BY', `SELECT 1 FROM api_token ORDER BY token_hash`],
  ])('refuses %s with a clear error, and the session stays usable', async (_, sql) => {
    const err = (await client.query(sql).catch((e: unknown) => e)) as { code?: string; message?: string };
    expect(err.code).toBe('0A000');
    expect(err.message).toContain('token_hash');
    expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
  });
});
