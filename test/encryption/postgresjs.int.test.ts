// postgres.js (porsager/postgres) through pgcmek with encrypted columns. Its
// defaults differ from node-postgres: named prepared statements reused across
// calls, pipelining, Describe before Execute, `sql.unsafe` on the simple
// protocol, cursors as Execute with a row limit, COPY streams.
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import postgres from 'postgres';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { startEncryptedProxy, table, type EncryptedProxy } from '../helpers/encrypted-proxy.js';

const PREFIX = 'cmek:v1:';

let db: TestDb;
let proxy: EncryptedProxy;
let sql: postgres.Sql;

beforeAll(async () => {
  db = await createTestDatabase('enc_pgjs');
  await db.client.query(`
    CREATE TABLE webhook (id int PRIMARY KEY, url text NOT NULL, secret text);
    CREATE TABLE workspace (id int PRIMARY KEY, settings jsonb NOT NULL DEFAULT '{}');
  `);
  proxy = await startEncryptedProxy({
    encrypted: [table('webhook', ['secret']), table('workspace', [{ column: 'settings', jsonPaths: [['smtp', 'password']], searchable: false, onDecryptError: 'error', encryptEmpty: false }])],
  });
  sql = postgres(proxy.via(db.url), { max: 2, onnotice: () => {} });
});

afterAll(async () => {
  await sql?.end({ timeout: 5 });
  await proxy?.close();
  await db?.drop();
});

beforeEach(async () => {
  await db.client.query('TRUNCATE webhook, workspace');
});

async function check(want: Record<number, string | null>): Promise<void> {
  const direct = await db.client.query<{ id: number; secret: string | null }>('SELECT id, secret FROM webhook ORDER BY id');
  expect(direct.rows.map((r) => r.id)).toEqual(Object.keys(want).map(Number));
  for (const r of direct.rows) {
    const plain = want[r.id]!;
    if (plain === null || plain === '') {
      expect(r.secret).toBe(plain);
      continue;
    }
    expect(r.secret!.startsWith(PREFIX)).toBe(true);
    expect(await proxy.keyring.decrypt(r.secret!)).toBe(plain);
  }
  const via = await sql<{ id: number; secret: string | null }[]>`SELECT id, secret FROM webhook ORDER BY id`;
  expect(Object.fromEntries(via.map((r) => [r.id, r.secret]))).toEqual(want);
}

describe('postgres.js, extended protocol (named prepared statements by default)', () => {
  it('the same tagged template 40× concurrently: every value encrypted, read back by another prepared statement', async () => {
    await Promise.all(Array.from({ length: 40 }, (_, i) => sql`INSERT INTO webhook (id, url, secret) VALUES (${i}, ${'u' + i}, ${'pgjs-' + i})`));
    const reads = await Promise.all([3, 17, 39].map((id) => sql`SELECT secret FROM webhook WHERE id = ${id}`));
    expect(reads.map((r) => r[0]!.secret)).toEqual(['pgjs-3', 'pgjs-17', 'pgjs-39']);
    await check(Object.fromEntries(Array.from({ length: 40 }, (_, i) => [i, `pgjs-${i}`])));
  });

  it('sql(rows) multi-row insert helper, UPDATE … RETURNING, NULL', async () => {
    const rows = [
      { id: 1, url: 'a', secret: 'helper-one' },
      { id: 2, url: 'b', secret: null },
      { id: 3, url: 'c', secret: 'helper-three' },
    ];
    await sql`INSERT INTO webhook ${sql(rows, 'id', 'url', 'secret')}`;
    const ret = await sql`UPDATE webhook SET secret = ${'updated'} WHERE id = ${3} RETURNING id, secret`;
    expect([...ret]).toEqual([{ id: 3, secret: 'updated' }]);
    await check({ 1: 'helper-one', 2: null, 3: 'updated' });
  });

  it('prepare: false (unnamed statements) works the same', async () => {
    const unnamed = postgres(proxy.via(db.url), { max: 1, prepare: false, onnotice: () => {} });
    try {
      await unnamed`INSERT INTO webhook (id, url, secret) VALUES (${1}, 'u', ${'unnamed'})`;
      const r = await unnamed`SELECT secret FROM webhook WHERE id = ${1}`;
      expect(r[0]!.secret).toBe('unnamed');
    } finally {
      await unnamed.end({ timeout: 5 });
    }
    await check({ 1: 'unnamed' });
  });

  it('jsonb: only the configured path is encrypted (sql.json)', async () => {
    await sql`INSERT INTO workspace (id, settings) VALUES (1, ${sql.json({ smtp: { host: 'mx', password: 'smtp-pw' }, theme: 'dark' })})`;
    const direct = await db.client.query('SELECT settings FROM workspace');
    expect(direct.rows[0].settings.smtp.password.startsWith(PREFIX)).toBe(true);
    expect(await proxy.keyring.decrypt(direct.rows[0].settings.smtp.password)).toBe('smtp-pw');
    expect(direct.rows[0].settings.smtp.host).toBe('mx');
    const via = await sql`SELECT settings FROM workspace WHERE id = 1`;
    expect(via[0]!.settings).toEqual({ smtp: { host: 'mx', password: 'smtp-pw' }, theme: 'dark' });
  });

  it('cursor(2): batches of rows via Execute with a row limit', async () => {
    await sql`INSERT INTO webhook ${sql(Array.from({ length: 5 }, (_, i) => ({ id: i, url: 'u', secret: `cur-${i}` })))}`;
    const batches: string[][] = [];
    for await (const rows of sql`SELECT secret FROM webhook WHERE id >= ${0} ORDER BY id`.cursor(2)) {
      batches.push(rows.map((r) => r.secret as string));
    }
    expect(batches).toEqual([['cur-0', 'cur-1'], ['cur-2', 'cur-3'], ['cur-4']]);
  });

  it('a refused statement: PostgresError with SQLSTATE and table/column, no value; sql.begin rolls back; the pool goes on', async () => {
    const err = (await sql`UPDATE webhook SET secret = upper(${'hidden-value'})`.catch((e: unknown) => e)) as postgres.PostgresError;
    expect(err).toBeInstanceOf(postgres.PostgresError);
    expect(err.code).toBe('0A000');
    expect(err.table_name).toBe('public.webhook');
    expect(err.column_name).toBe('secret');
    expect(err.message).not.toContain('hidden-value');
    const tx = await sql
      .begin((t) => [t`INSERT INTO webhook (id, url, secret) VALUES (1, 'u', ${'in-tx'})`, t`SELECT id FROM webhook WHERE secret LIKE ${'in%'}`])
      .catch((e: unknown) => e as postgres.PostgresError);
    expect((tx as postgres.PostgresError).code).toBe('0A000');
    await check({});
    await sql`INSERT INTO webhook (id, url, secret) VALUES (2, 'u', ${'after'})`;
    await check({ 2: 'after' });
  });
});

describe('postgres.js, simple protocol', () => {
  it('sql.unsafe without parameters: multi-statement text with literals', async () => {
    await sql.unsafe(`INSERT INTO webhook VALUES (1, 'u', 'unsafe-one'); INSERT INTO webhook VALUES (2, 'u', E'unsafe\\ttwo')`);
    const r = await sql.unsafe(`SELECT secret FROM webhook ORDER BY id`);
    expect(r.map((x) => x.secret)).toEqual(['unsafe-one', 'unsafe\ttwo']);
    await check({ 1: 'unsafe-one', 2: 'unsafe\ttwo' });
  });

  it('sql.unsafe with parameters (extended, unnamed)', async () => {
    await sql.unsafe('INSERT INTO webhook (id, url, secret) VALUES ($1, $2, $3)', [1, 'u', 'unsafe-param']);
    await check({ 1: 'unsafe-param' });
  });

  it('COPY FROM STDIN via .writable() and COPY TO STDOUT via .readable()', async () => {
    const w = await sql`COPY webhook (id, url, secret) FROM STDIN`.writable();
    await pipeline(Readable.from(['1\tu\tcopy-one\n', '2\tu\t\\N\n3\tu\tcopy three\n']), w);
    await check({ 1: 'copy-one', 2: null, 3: 'copy three' });
    const r = await sql`COPY (SELECT id, secret FROM webhook ORDER BY id) TO STDOUT`.readable();
    let out = '';
    await pipeline(
      r,
      new Writable({
        write(chunk: Buffer, _enc, done) {
          out += chunk.toString();
          done();
        },
      }),
    );
    expect(out).toBe('1\tcopy-one\n2\t\\N\n3\tcopy three\n');
  });
});
