// A malformed JSON document written to a jsonb column with `json_paths` cannot be
// encrypted path by path: the write is refused with 22P02 (as Postgres refuses
// bad JSON itself), naming table and column and never the value, in every way a
// value reaches the column: literal, Bind parameter (text and binary), array
// parameter, and COPY.
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { column, startEncryptedProxy, table, type EncryptedProxy } from '../helpers/encrypted-proxy.js';
import { codes, errorOf, RawClient } from '../proxy/raw-client.js';

const SECRET = 'smtp-pw-do-not-leak';
const BAD = `{"smtp": {"password": "${SECRET}", }`;

let db: TestDb;
let proxy: EncryptedProxy;
let app: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase('enc_json_err');
  await db.client.query(`
    DO $$ BEGIN CREATE ROLE pgcmek_trust LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
    CREATE TABLE workspace (id int PRIMARY KEY, settings jsonb, raw json);
    GRANT ALL ON ALL TABLES IN SCHEMA public TO pgcmek_trust;
  `);
  proxy = await startEncryptedProxy({
    encrypted: [table('workspace', [column('settings', { jsonPaths: [['smtp', 'password']] }), column('raw', { jsonPaths: [['smtp', 'password']] })])],
  });
  app = new pg.Client(proxy.via(db.url));
  await app.connect();
});

afterAll(async () => {
  await app?.end();
  await proxy?.close();
  await db?.drop();
});

async function fails(c: pg.Client, q: string | pg.QueryConfig, values?: unknown[]): Promise<pg.DatabaseError> {
  try {
    await c.query(q as string, values);
  } catch (e) {
    return e as pg.DatabaseError;
  }
  throw new Error('expected the statement to fail');
}

function expectRefusal(e: pg.DatabaseError, col = 'settings'): void {
  expect(e.code).toBe('22P02');
  expect(e.message).toContain(`public.workspace.${col}`);
  expect(e.message).toMatch(/JSON/);
  expect(e.table).toBe('public.workspace');
  expect(e.column).toBe(col);
  expect(JSON.stringify({ ...e, message: e.message })).not.toContain(SECRET);
}

describe('malformed JSON for a json_paths column', () => {
  it('Bind parameter (text format): 22P02 naming the column; nothing written; the session goes on', async () => {
    expectRefusal(await fails(app, 'INSERT INTO workspace (id, settings) VALUES ($1, $2)', [1, BAD]));
    expect((await db.client.query('SELECT count(*)::int AS n FROM workspace')).rows[0].n).toBe(0);
    await app.query('INSERT INTO workspace (id, settings) VALUES ($1, $2)', [1, { smtp: { password: 'ok' } }]);
    expect((await app.query('SELECT settings FROM workspace WHERE id = 1')).rows[0].settings).toEqual({ smtp: { password: 'ok' } });
  });

  it('a json column and a literal in a simple query', async () => {
    expectRefusal(await fails(app, `INSERT INTO workspace (id, raw) VALUES (2, '${BAD}')`), 'raw');
    expectRefusal(await fails(app, `UPDATE workspace SET settings = '${BAD}' WHERE id = 1`));
    expect((await app.query('SELECT settings FROM workspace WHERE id = 1')).rows[0].settings).toEqual({ smtp: { password: 'ok' } });
  });

  it('a literal in an extended-protocol statement (refused at Parse)', async () => {
    expectRefusal(await fails(app, `UPDATE workspace SET settings = '${BAD}' WHERE id = $1`, [1]));
  });

  it('inside a transaction: the transaction is aborted as after a server error', async () => {
    await app.query('BEGIN');
    expectRefusal(await fails(app, 'UPDATE workspace SET settings = $1 WHERE id = 1', [BAD]));
    expect((await fails(app, 'SELECT 1')).code).toBe('25P02');
    await app.query('ROLLBACK');
  });

  it('an array parameter (unnest) with one malformed element', async () => {
    expectRefusal(await fails(app, 'INSERT INTO workspace (id, settings) SELECT * FROM unnest($1::int[], $2::jsonb[])', [[5, 6], ['{"smtp": {"password": "fine"}}', BAD]]));
    expect((await db.client.query('SELECT count(*)::int AS n FROM workspace WHERE id IN (5, 6)')).rows[0].n).toBe(0);
  });
});

describe('malformed JSON in COPY FROM STDIN', () => {
  it('the COPY fails (the server reports the proxy\'s CopyFail, 57014) naming the column, never the value; nothing is loaded', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    try {
      c.send(serialize.query('COPY workspace (id, settings) FROM STDIN'));
      expect((await c.next(5_000)).code).toBe('G');
      c.send(serialize.copyData(Buffer.from(`7\t{"smtp": {"password": "fine"}}\n8\t${BAD}\n`)), serialize.copyDone());
      const err = (await c.untilReady()).find((m) => m.code === 'E')!;
      const fields = errorOf(err);
      expect(fields.code).toBe('57014');
      expect(fields.message).toContain('public.workspace.settings');
      expect(fields.message).toMatch(/JSON/);
      expect(JSON.stringify(fields)).not.toContain(SECRET);
      c.send(serialize.query('SELECT 1'));
      expect(codes(await c.untilReady())).toBe('TDCZ');
    } finally {
      c.end();
    }
    expect((await db.client.query('SELECT count(*)::int AS n FROM workspace WHERE id IN (7, 8)')).rows[0].n).toBe(0);
  });
});
