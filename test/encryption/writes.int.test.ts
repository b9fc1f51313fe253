// The write path with node-postgres: every way a value reaches a configured
// column (multi-row VALUES with and without a column list, DEFAULT, INSERT …
// SELECT, UPDATE forms, ON CONFLICT, MERGE, casts, writing CTEs, named prepared
// statements) stores an envelope that decrypts to what the app wrote, and reads
// back as plaintext through pgcmek.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { column, startEncryptedProxy, table, type EncryptedProxy } from '../helpers/encrypted-proxy.js';

const PREFIX = 'cmek:v1:';

let db: TestDb;
let proxy: EncryptedProxy;
let app: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase('enc_writes');
  await db.client.query(`
    CREATE TABLE webhook (id int PRIMARY KEY, url text NOT NULL DEFAULT 'https://default', secret text, note text);
    CREATE TABLE cred (id int PRIMARY KEY, login text, password varchar(2000), pin text DEFAULT 'default-pin');
    CREATE TABLE staging (id int PRIMARY KEY, secret text);
    CREATE TABLE blanks (id int PRIMARY KEY, kept text, enc text);
  `);
  proxy = await startEncryptedProxy({
    encrypted: [
      table('webhook', ['secret']),
      table('cred', ['password', 'pin']),
      table('blanks', ['kept', column('enc', { encryptEmpty: true })]),
    ],
  });
  app = new pg.Client(proxy.via(db.url));
  await app.connect();
});

afterAll(async () => {
  await app?.end();
  await proxy?.close();
  await db?.drop();
});

beforeEach(async () => {
  await db.client.query('TRUNCATE webhook, cred, staging, blanks');
});

/** Asserts a stored value is an envelope of `plain` (or that NULL stayed NULL). */
async function expectEnvelope(stored: string | null, plain: string | null): Promise<void> {
  if (plain === null) {
    expect(stored).toBeNull();
    return;
  }
  expect(stored!.startsWith(PREFIX)).toBe(true);
  if (plain.length >= 4) expect(stored).not.toContain(plain);
  expect(await proxy.keyring.decrypt(stored!)).toBe(plain);
}

/** Both sides of webhook: what the server stores (must be envelopes of `want`) and what the app reads (plaintext). */
async function checkWebhook(want: Record<number, string | null>): Promise<void> {
  const ids = Object.keys(want).map(Number);
  const direct = await db.client.query<{ id: number; secret: string | null }>('SELECT id, secret FROM webhook WHERE id = ANY($1) ORDER BY id', [ids]);
  expect(direct.rows.map((r) => r.id)).toEqual(ids.sort((a, b) => a - b));
  for (const r of direct.rows) await expectEnvelope(r.secret, want[r.id]!);
  const via = await app.query('SELECT id, secret FROM webhook WHERE id = ANY($1) ORDER BY id', [ids]);
  expect(Object.fromEntries(via.rows.map((r) => [r.id, r.secret]))).toEqual(want);
}

describe('INSERT', () => {
  it('multi-row VALUES with a column list, bind parameters and literals mixed', async () => {
    await app.query(`INSERT INTO webhook (id, secret, url) VALUES (1, $1, 'https://1'), (2, 'lit-two', $2), (3, $3, 'https://3')`, ['param-one', 'https://2', null]);
    await checkWebhook({ 1: 'param-one', 2: 'lit-two', 3: null });
    const urls = await db.client.query('SELECT url FROM webhook ORDER BY id');
    expect(urls.rows.map((r) => r.url)).toEqual(['https://1', 'https://2', 'https://3']); // not encrypted
  });

  it('without a column list (column order from the live catalog), with DEFAULT', async () => {
    await app.query(`INSERT INTO webhook VALUES (1, 'https://a', $1, 'note-a'), (2, DEFAULT, 'lit-b', DEFAULT)`, ['pos-a']);
    await app.query(`INSERT INTO webhook VALUES (3, 'https://c', 'simple-literal', 'n')`); // simple protocol
    await checkWebhook({ 1: 'pos-a', 2: 'lit-b', 3: 'simple-literal' });
    const plain = await db.client.query('SELECT url, note FROM webhook ORDER BY id');
    expect(plain.rows).toEqual([
      { url: 'https://a', note: 'note-a' },
      { url: 'https://default', note: null },
      { url: 'https://c', note: 'n' },
    ]);
  });

  it('a DEFAULT on an encrypted column is stored by the server as written (the default is in the schema, not in the statement)', async () => {
    await app.query(`INSERT INTO cred (id, login, password) VALUES (1, 'u', $1)`, ['pw']);
    const direct = await db.client.query('SELECT password, pin FROM cred WHERE id = 1');
    await expectEnvelope(direct.rows[0].password, 'pw');
    expect(direct.rows[0].pin).toBe('default-pin'); // legacy-style plaintext: the proxy never saw it
    const via = await app.query('SELECT password, pin FROM cred WHERE id = 1');
    expect(via.rows[0]).toEqual({ password: 'pw', pin: 'default-pin' });
  });

  it('INSERT … SELECT $1, literal', async () => {
    await app.query(`INSERT INTO webhook (id, url, secret) SELECT 1, 'https://s', $1`, ['from-select']);
    await app.query(`INSERT INTO webhook (id, url, secret) SELECT 2, $1, 'lit-select'`, ['https://t']);
    await app.query(`INSERT INTO webhook (id, url, secret) SELECT g, 'https://g', 'many' FROM generate_series(3, 4) g`);
    await checkWebhook({ 1: 'from-select', 2: 'lit-select', 3: 'many', 4: 'many' });
  });

  it('INSERT … SELECT from another encrypted column copies the envelope as is', async () => {
    await app.query(`INSERT INTO webhook (id, url, secret) VALUES (1, 'u', 'copied-secret')`);
    await app.query(`INSERT INTO staging (id, secret) VALUES (9, 'x')`); // staging is not configured
    await app.query(`INSERT INTO webhook (id, url, secret) SELECT 2, url, secret FROM webhook WHERE id = 1`);
    await checkWebhook({ 1: 'copied-secret', 2: 'copied-secret' });
  });
});

describe('UPDATE', () => {
  beforeEach(async () => {
    await app.query(`INSERT INTO webhook (id, url, secret) VALUES (1, 'u1', 'old-1'), (2, 'u2', 'old-2')`);
    await app.query(`INSERT INTO cred (id, login, password, pin) VALUES (1, 'alice', 'old-pw', 'old-pin')`);
  });

  it('SET col = $n and SET col = literal', async () => {
    await app.query('UPDATE webhook SET secret = $1 WHERE id = $2', ['new-1', 1]);
    await app.query(`UPDATE webhook SET secret = 'new-2', note = 'n' WHERE id = 2`);
    await checkWebhook({ 1: 'new-1', 2: 'new-2' });
  });

  it('SET (a, b) = ($1, literal) and SET (a, b) = (SELECT …)', async () => {
    await app.query(`UPDATE cred SET (password, pin) = ($1, '9876') WHERE id = 1`, ['tuple-pw']);
    let direct = await db.client.query('SELECT password, pin FROM cred WHERE id = 1');
    await expectEnvelope(direct.rows[0].password, 'tuple-pw');
    await expectEnvelope(direct.rows[0].pin, '9876');
    await app.query(`UPDATE cred SET (login, password) = (SELECT 'bob', $1::text) WHERE id = 1`, ['sub-pw']);
    direct = await db.client.query('SELECT login, password FROM cred WHERE id = 1');
    expect(direct.rows[0].login).toBe('bob');
    await expectEnvelope(direct.rows[0].password, 'sub-pw');
    const via = await app.query('SELECT login, password, pin FROM cred WHERE id = 1');
    expect(via.rows[0]).toEqual({ login: 'bob', password: 'sub-pw', pin: '9876' });
  });

  it('SET col = NULL, and copying between encrypted columns of the same policy', async () => {
    await app.query(`UPDATE webhook SET secret = NULL WHERE id = 1`);
    await app.query(`UPDATE cred SET pin = password WHERE id = 1`);
    await checkWebhook({ 1: null, 2: 'old-2' });
    const via = await app.query('SELECT password, pin FROM cred');
    expect(via.rows[0]).toEqual({ password: 'old-pw', pin: 'old-pw' });
  });
});

describe('upserts and MERGE', () => {
  it('INSERT … ON CONFLICT DO UPDATE SET col = EXCLUDED.col', async () => {
    const sql = `INSERT INTO webhook (id, url, secret) VALUES ($1, 'u', $2) ON CONFLICT (id) DO UPDATE SET secret = EXCLUDED.secret`;
    await app.query(sql, [1, 'first']);
    await app.query(sql, [1, 'second']);
    await checkWebhook({ 1: 'second' });
  });

  it('INSERT … ON CONFLICT DO UPDATE SET col = $n (a parameter only the update uses)', async () => {
    const sql = `INSERT INTO webhook (id, url, secret) VALUES ($1, 'u', $2) ON CONFLICT (id) DO UPDATE SET secret = $3, note = 'updated'`;
    await app.query(sql, [1, 'inserted', 'unused']);
    await app.query(sql, [1, 'ignored', 'from-update']);
    await checkWebhook({ 1: 'from-update' });
    const note = await db.client.query('SELECT note FROM webhook WHERE id = 1');
    expect(note.rows[0].note).toBe('updated');
  });

  it('MERGE with INSERT and UPDATE actions', async () => {
    await app.query(`INSERT INTO webhook (id, url, secret) VALUES (1, 'u', 'before')`);
    const sql = `MERGE INTO webhook w USING (VALUES ($1::int, $2::text)) AS s(id, secret) ON w.id = s.id
                 WHEN MATCHED THEN UPDATE SET secret = s.secret
                 WHEN NOT MATCHED THEN INSERT (id, url, secret) VALUES (s.id, 'merged', s.secret)`;
    await app.query(sql, [1, 'merge-updated']);
    await app.query(sql, [2, 'merge-inserted']);
    await app.query(`MERGE INTO webhook w USING (SELECT 3 AS id) s ON w.id = s.id
                     WHEN NOT MATCHED THEN INSERT (id, url, secret) VALUES (s.id, 'm', 'merge-literal')`);
    await checkWebhook({ 1: 'merge-updated', 2: 'merge-inserted', 3: 'merge-literal' });
  });
});

describe('casts and CTEs', () => {
  it('$1::text, CAST($1 AS varchar), literal::text, varchar column', async () => {
    await app.query(`INSERT INTO webhook (id, url, secret) VALUES (1, 'u', $1::text), (2, 'u', CAST($2 AS varchar)), (3, 'u', 'lit'::text), (4, 'u', CAST('c-lit' AS character varying))`, ['cast-text', 'cast-varchar']);
    await checkWebhook({ 1: 'cast-text', 2: 'cast-varchar', 3: 'lit', 4: 'c-lit' });
    await app.query(`INSERT INTO cred (id, password) VALUES (1, $1::varchar)`, ['vc']);
    const direct = await db.client.query('SELECT password FROM cred WHERE id = 1');
    await expectEnvelope(direct.rows[0].password, 'vc');
  });

  // An explicit cast to a length-limited type truncates silently in Postgres: the envelope
  // would be cut and the secret lost. It must be refused, never forwarded.
  it.each([
    ['varchar(n), literal', `INSERT INTO webhook (id, url, secret) VALUES (1, 'u', CAST('c-lit' AS varchar(100)))`, []],
    ['varchar(n), parameter', `INSERT INTO webhook (id, url, secret) VALUES (1, 'u', $1::varchar(20))`, ['abc']],
    ['char(n), parameter', `INSERT INTO webhook (id, url, secret) VALUES (1, 'u', $1::char(30))`, ['abc']],
    ['char (= char(1)), UPDATE', `UPDATE webhook SET secret = $1::char WHERE id = 1`, ['abc']],
  ])('a cast to a length-limited type (%s) is refused rather than truncating the envelope', async (_label, sql, values) => {
    await expect(app.query(sql, values)).rejects.toMatchObject({ code: '0A000', table: 'public.webhook', column: 'secret' });
    const direct = await db.client.query('SELECT count(*)::int AS n FROM webhook');
    expect(direct.rows[0].n).toBe(0);
  });

  it('CTEs wrapping writes: WITH … INSERT, data-modifying CTEs, RETURNING through the CTE', async () => {
    await app.query(`WITH v(id, s) AS (VALUES (1, $1::text), (2, 'cte-lit')) INSERT INTO webhook (id, url, secret) SELECT id, 'u', s FROM v`, ['cte-param']);
    const r = await app.query(`WITH ins AS (INSERT INTO webhook (id, url, secret) VALUES (3, 'u', $1) RETURNING id, secret) SELECT secret FROM ins`, ['cte-ret']);
    expect(r.rows).toEqual([{ secret: 'cte-ret' }]);
    const u = await app.query(`WITH up AS (UPDATE webhook SET secret = $1 WHERE id = 2 RETURNING secret) SELECT * FROM up`, ['cte-upd']);
    expect(u.rows).toEqual([{ secret: 'cte-upd' }]);
    await checkWebhook({ 1: 'cte-param', 2: 'cte-upd', 3: 'cte-ret' });
  });
});

describe('ORM and bulk patterns', () => {
  it('SQL-level PREPARE … EXECUTE with literal arguments', async () => {
    await app.query(`PREPARE ins_sql(int, text) AS INSERT INTO webhook (id, url, secret) VALUES ($1, 'u', $2)`);
    await app.query(`EXECUTE ins_sql(1, 'sql-prepared')`);
    await app.query(`EXECUTE ins_sql(2, E'sql\\tprepared')`);
    await app.query('DEALLOCATE ins_sql');
    await checkWebhook({ 1: 'sql-prepared', 2: 'sql\tprepared' });
  });

  it('bulk insert with unnest($n::text[]): every array element encrypted', async () => {
    await app.query(`INSERT INTO webhook (id, url, secret) SELECT * FROM unnest($1::int[], $2::text[], $3::text[])`, [
      [1, 2, 3],
      ['u', 'u', 'u'],
      ['un-a', null, 'un "c", {d}'],
    ]);
    await checkWebhook({ 1: 'un-a', 2: null, 3: 'un "c", {d}' });
  });

  it('bulk update: UPDATE … FROM (VALUES …) and a Django-style CASE WHEN with quoted identifiers', async () => {
    await app.query(`INSERT INTO webhook (id, url, secret) VALUES (1, 'u', 'a0'), (2, 'u', 'b0')`);
    await app.query(`UPDATE webhook w SET secret = v.s FROM (VALUES (1, $1), (2, $2)) v(id, s) WHERE w.id = v.id`, ['a1', 'b1']);
    await checkWebhook({ 1: 'a1', 2: 'b1' });
    await app.query(
      `UPDATE "webhook" SET "secret" = CASE WHEN ("webhook"."id" = $1) THEN $2 WHEN ("webhook"."id" = $3) THEN $4 ELSE NULL END WHERE "webhook"."id" IN ($5, $6)`,
      [1, 'a2', 2, 'b2', 1, 2],
    );
    await checkWebhook({ 1: 'a2', 2: 'b2' });
    const r = await app.query(`INSERT INTO "public"."webhook" ("id", "url", "secret") VALUES ($1, $2, $3) RETURNING "webhook"."id", "webhook"."secret"`, [3, 'u', 'quoted']);
    expect(r.rows).toEqual([{ id: 3, secret: 'quoted' }]);
  });

  it('a 1 MB value (frames larger than a socket read) round-trips', async () => {
    const big = 'ü'.repeat(500_000) + 'end';
    await app.query(`INSERT INTO webhook (id, url, secret) VALUES (1, 'u', $1)`, [big]);
    await app.query(`INSERT INTO webhook (id, url, secret) VALUES (2, 'u', '${'l'.repeat(300_000)}')`);
    await checkWebhook({ 1: big, 2: 'l'.repeat(300_000) });
  });
});

describe('empty strings', () => {
  it("'' stays '' by default (and `= ''` finds it); encrypt_empty: true encrypts it", async () => {
    await app.query(`INSERT INTO blanks VALUES (1, '', ''), (2, $1, $2)`, ['', '']);
    const direct = await db.client.query('SELECT id, kept, enc FROM blanks ORDER BY id');
    for (const r of direct.rows) {
      expect(r.kept).toBe('');
      await expectEnvelope(r.enc, '');
    }
    const via = await app.query(`SELECT id, kept, enc FROM blanks WHERE kept = '' ORDER BY id`);
    expect(via.rows).toEqual([
      { id: 1, kept: '', enc: '' },
      { id: 2, kept: '', enc: '' },
    ]);
  });
});

describe('prepared statements', () => {
  it('a named statement executed 50× encrypts every execution with its own value', async () => {
    for (let i = 0; i < 50; i++) {
      await app.query({ name: 'ins', text: 'INSERT INTO webhook (id, url, secret) VALUES ($1, $2, $3)', values: [i, `u${i}`, `named-${i}`] });
    }
    const sel = [];
    for (let i = 0; i < 50; i += 7) sel.push(await app.query({ name: 'sel', text: 'SELECT secret FROM webhook WHERE id = $1', values: [i] }));
    expect(sel.map((r) => r.rows[0].secret)).toEqual([0, 7, 14, 21, 28, 35, 42, 49].map((i) => `named-${i}`));
    const direct = await db.client.query<{ id: number; secret: string }>('SELECT id, secret FROM webhook ORDER BY id');
    expect(direct.rows).toHaveLength(50);
    for (const r of direct.rows) await expectEnvelope(r.secret, `named-${r.id}`);
    expect(new Set(direct.rows.map((r) => r.secret)).size).toBe(50); // fresh nonce per value
  });

  it('a second client (pool) prepares the same statement name independently', async () => {
    const pool = new pg.Pool({ connectionString: proxy.via(db.url), max: 4 });
    try {
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => pool.query({ name: 'pool-ins', text: 'INSERT INTO webhook (id, url, secret) VALUES ($1, $2, $3)', values: [i, 'p', `pool-${i}`] })),
      );
    } finally {
      await pool.end();
    }
    await checkWebhook(Object.fromEntries(Array.from({ length: 20 }, (_, i) => [i, `pool-${i}`])));
  });
});
