// Failing closed: values that cannot be decrypted (wrong KEK) and statements that
// cannot be encrypted are errors with a real SQLSTATE, naming table and column and
// never the value; the session (and an explicit transaction) behaves as it would
// after a real server error. `on_decrypt_error: ciphertext` trades the error for
// the stored value.
import { createHash } from 'node:crypto';
import { serialize } from 'pg-protocol';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { column, startEncryptedProxy, table, type EncryptedProxy } from '../helpers/encrypted-proxy.js';
import { codes, dataRows, errorOf, RawClient } from '../proxy/raw-client.js';

// pg-cursor ships no type declarations: this is the slice the tests use.
interface PgCursor extends pg.Submittable {
  read(rows: number): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}
type PgCursorCtor = new (text: string, values?: unknown[]) => PgCursor;

/** node-postgres supports `binary: true` (binary result format); @types/pg does not declare it. */
function binary(q: pg.QueryConfig): pg.QueryConfig {
  return { ...q, binary: true } as pg.QueryConfig;
}

const Cursor = ((await import('pg-cursor' as string)) as { default: PgCursorCtor }).default;

const SECRET = 'whsec_do_not_leak';

let db: TestDb;
let proxy: EncryptedProxy;
let app: pg.Client;
/** An envelope under a KEK this proxy does not have. */
let foreign: string;

beforeAll(async () => {
  db = await createTestDatabase('enc_fail');
  await db.client.query(`
    DO $$ BEGIN CREATE ROLE pgcmek_trust LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
    CREATE TABLE workspace (id int PRIMARY KEY, name text);
    CREATE TABLE webhook (id int PRIMARY KEY, url text NOT NULL, secret text);
    CREATE TABLE lenient (id int PRIMARY KEY, token text);
    INSERT INTO workspace VALUES (1, 'acme');
    GRANT ALL ON ALL TABLES IN SCHEMA public TO pgcmek_trust;
  `);
  proxy = await startEncryptedProxy({
    encrypted: [table('webhook', ['secret']), table('lenient', [column('token', { onDecryptError: 'ciphertext' })])],
  });
  app = new pg.Client(proxy.via(db.url));
  await app.connect();
  await app.query(`INSERT INTO webhook VALUES (1, 'https://ok', $1), (2, 'https://empty', ''), (3, 'https://null', NULL)`, [SECRET]);
  const other = await startEncryptedProxy({ encrypted: [] });
  foreign = await other.keyring.encrypt('foreign-plaintext');
  await other.close();
  await db.client.query(`INSERT INTO webhook VALUES (10, 'https://foreign', $1)`, [foreign]);
  await db.client.query(`INSERT INTO lenient VALUES (1, $1)`, [foreign]);
});

afterAll(async () => {
  await app?.end();
  await proxy?.close();
  await db?.drop();
});

/** Runs a statement that must fail; returns the error. */
async function fails(c: pg.Client, text: string, values?: unknown[]): Promise<pg.DatabaseError> {
  try {
    await c.query(text, values);
  } catch (e) {
    return e as pg.DatabaseError;
  }
  throw new Error(`expected to fail: ${text}`);
}

/** Nothing in an error may carry a secret or an envelope. */
function expectNoValue(e: pg.DatabaseError, ...values: string[]): void {
  const all = JSON.stringify({ ...e, message: e.message });
  for (const v of [...values, 'cmek:v1:']) expect(all).not.toContain(v);
}

describe('a value the keyring cannot decrypt', () => {
  it('XX001 naming CMEKDecryptionError, table and column, never the value (simple and extended); the session goes on', async () => {
    for (const values of [undefined, [10]]) {
      const sql = values ? 'SELECT id, secret FROM webhook WHERE id = $1' : 'SELECT id, secret FROM webhook WHERE id = 10';
      const e = await fails(app, sql, values);
      expect(e.code).toBe('XX001');
      expect(e.message).toMatch(/^CMEKDecryptionError/);
      expect(e.message).toContain('public.webhook.secret');
      expect(e.table).toBe('public.webhook');
      expect(e.column).toBe('secret');
      expectNoValue(e, 'foreign-plaintext', foreign.slice(8, 40));
      const ok = await app.query('SELECT secret FROM webhook WHERE id = 1');
      expect(ok.rows[0].secret).toBe(SECRET);
    }
  });

  it('a result with one bad row among good ones fails as a whole (no partial result), then the session goes on', async () => {
    const e = await fails(app, 'SELECT id, secret FROM webhook ORDER BY id');
    expect(e.code).toBe('XX001');
    const after = await app.query('SELECT count(*)::int AS n FROM webhook');
    expect(after.rows[0].n).toBe(4);
  });

  it('inside a transaction: the transaction stays usable (the server saw no error) and commits', async () => {
    await app.query('BEGIN');
    await fails(app, 'SELECT secret FROM webhook WHERE id = 10');
    await app.query(`INSERT INTO webhook VALUES (11, 'https://tx', 'tx-secret')`);
    await app.query('COMMIT');
    const r = await app.query('SELECT secret FROM webhook WHERE id = 11');
    expect(r.rows[0].secret).toBe('tx-secret');
  });

  it('on_decrypt_error: ciphertext returns the stored value instead', async () => {
    const r = await app.query('SELECT token FROM lenient WHERE id = 1');
    expect(r.rows[0].token).toBe(foreign);
    const x = await app.query(binary({ text: 'SELECT token FROM lenient WHERE id = $1', values: [1] }));
    expect(String(x.rows[0].token)).toBe(foreign);
  });
});

// Rows of a result with no configured column are forwarded from their header,
// without a look each (ResultRows.passes): a pipeline that mixes such results with
// ones to decrypt, or follows a failed decryption, must still come out right.
describe('rows of results without a configured column, in a pipeline', () => {
  it('pass untouched between results that are decrypted, statement after statement', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    try {
      const plain = 'SELECT g AS n, md5(g::text) AS h FROM generate_series(1, 50) g';
      const mapped = 'SELECT id, secret FROM webhook WHERE id = 1';
      c.send(
        serialize.parse({ name: 'p', text: plain, types: [] }),
        serialize.parse({ name: 'm', text: mapped, types: [] }),
        ...['p', 'm', 'p', 'm'].flatMap((name) => [serialize.bind({ statement: name }), serialize.execute({})]),
        serialize.sync(),
      );
      const msgs = await c.untilReady();
      expect(codes(msgs)).toBe('11' + ('2' + 'D'.repeat(50) + 'C' + '2DC').repeat(2) + 'Z');
      const rows = dataRows(msgs);
      const expected = Array.from({ length: 50 }, (_, i) => [String(i + 1), createHash('md5').update(String(i + 1)).digest('hex')]);
      expect(rows).toEqual([...expected, ['1', SECRET], ...expected, ['1', SECRET]]);
      // The same statements as one simple-protocol query: a RowDescription per result.
      c.send(serialize.query(`${plain}; ${mapped}; ${plain}`));
      const q = await c.untilReady();
      expect(dataRows(q)).toEqual([...expected, ['1', SECRET], ...expected]);
    } finally {
      c.end();
    }
  });

  it('are dropped with the rest of the batch after a value fails to decrypt', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    try {
      c.send(
        serialize.parse({ name: 'p', text: 'SELECT g FROM generate_series(1, 20) g', types: [] }),
        serialize.parse({ name: 'bad', text: 'SELECT secret FROM webhook WHERE id = 10', types: [] }),
        serialize.bind({ statement: 'p' }),
        serialize.execute({}),
        serialize.bind({ statement: 'bad' }),
        serialize.execute({}),
        serialize.bind({ statement: 'p' }),
        serialize.execute({}),
        serialize.sync(),
      );
      const msgs = await c.untilReady();
      // The first result whole; then the error in place of the bad row, and nothing more up to ReadyForQuery.
      expect(codes(msgs)).toBe('112' + 'D'.repeat(20) + 'C' + '2EZ');
      expect(errorOf(msgs.find((m) => m.code === 'E')!).code).toBe('XX001');
      c.send(serialize.bind({ statement: 'p' }), serialize.execute({}), serialize.sync());
      expect(dataRows(await c.untilReady())).toEqual(Array.from({ length: 20 }, (_, i) => [String(i + 1)]));
    } finally {
      c.end();
    }
  });
});

describe('statements the proxy cannot encrypt are refused', () => {
  const refusals: [string, string, unknown[] | undefined][] = [
    ['upper(literal) written to the column', `UPDATE webhook SET secret = upper('${SECRET}') WHERE id = 1`, undefined],
    ['upper($1) written to the column', `UPDATE webhook SET secret = upper($1) WHERE id = 1`, [SECRET]],
    ['a concatenation', `INSERT INTO webhook VALUES (20, 'u', 'pre' || $1)`, [SECRET]],
    ['a subquery from a non-encrypted table', `UPDATE webhook SET secret = (SELECT name FROM workspace WHERE id = 1) WHERE id = 1`, undefined],
    ['INSERT … SELECT from a non-encrypted table', `INSERT INTO webhook (id, url, secret) SELECT id + 100, 'u', name FROM workspace`, undefined],
    ['a number for an encrypted column', `INSERT INTO webhook VALUES (21, 'u', 42)`, undefined],
    ['WHERE secret = literal', `SELECT id FROM webhook WHERE secret = '${SECRET}'`, undefined],
    ['WHERE secret = $1', `SELECT id FROM webhook WHERE secret = $1`, [SECRET]],
    ['WHERE secret LIKE', `SELECT id FROM webhook WHERE secret LIKE '${SECRET.slice(0, 6)}%'`, undefined],
    ['DELETE … WHERE secret <> $1', `DELETE FROM webhook WHERE secret <> $1`, [SECRET]],
  ];

  it.each(refusals)('%s: 0A000 naming public.webhook.secret, never the value; nothing changes', async (_label, sql, values) => {
    const before = await db.client.query('SELECT id, secret FROM webhook ORDER BY id');
    const e = await fails(app, sql, values);
    expect(e.code).toBe('0A000');
    expect(e.message).toContain('public.webhook.secret');
    expect(e.table).toBe('public.webhook');
    expect(e.column).toBe('secret');
    expectNoValue(e, SECRET, SECRET.slice(0, 6));
    const after = await db.client.query('SELECT id, secret FROM webhook ORDER BY id');
    expect(after.rows).toEqual(before.rows);
    expect((await app.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('allowed: IS NULL, IS NOT NULL, = \'\' (empty strings stay empty)', async () => {
    const n = await app.query(`SELECT id FROM webhook WHERE secret IS NULL ORDER BY id`);
    expect(n.rows).toEqual([{ id: 3 }]);
    const nn = await app.query(`SELECT id FROM webhook WHERE secret IS NOT NULL AND id < 10 ORDER BY id`);
    expect(nn.rows).toEqual([{ id: 1 }, { id: 2 }]);
    const empty = await app.query(`SELECT id, secret FROM webhook WHERE secret = ''`);
    expect(empty.rows).toEqual([{ id: 2, secret: '' }]);
    // `= $1` is refused at Parse: the proxy cannot know the parameter will be ''.
    expect((await fails(app, `SELECT id FROM webhook WHERE secret = $1`, [''])).code).toBe('0A000');
  });
});

describe('a refusal inside a transaction', () => {
  for (const mode of ['simple', 'extended'] as const) {
    it(`${mode}: BEGIN; refused statement → the transaction is aborted (25P02 next), ROLLBACK works`, async () => {
      const c = new pg.Client(proxy.via(db.url));
      await c.connect();
      try {
        await c.query('BEGIN');
        await c.query(`INSERT INTO webhook VALUES (30, 'u', 'in-tx')`);
        const e = mode === 'simple' ? await fails(c, `UPDATE webhook SET secret = upper('x')`) : await fails(c, `UPDATE webhook SET secret = upper($1)`, ['x']);
        expect(e.code).toBe('0A000');
        const next = await fails(c, 'SELECT 1');
        expect(next.code).toBe('25P02');
        await c.query('ROLLBACK');
        expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
        const r = await db.client.query('SELECT count(*)::int AS n FROM webhook WHERE id = 30');
        expect(r.rows[0].n).toBe(0);
      } finally {
        await c.end();
      }
    });
  }

  it('a refused statement in a multi-statement simple query rolls back the statements before it (one implicit transaction)', async () => {
    await fails(app, `INSERT INTO webhook VALUES (31, 'u', 'first'); UPDATE webhook SET secret = upper(url)`);
    const r = await db.client.query('SELECT count(*)::int AS n FROM webhook WHERE id = 31');
    expect(r.rows[0].n).toBe(0);
  });
});

describe('a refusal before Sync reaches a client that only flushes', () => {
  // pg-cursor and postgres.js (describe-first) send Parse … Flush and wait for replies
  // before they ever send Sync: the error must come back on Flush, as the server's would.
  it('raw protocol: Parse(refused)/Describe/Flush gets its ErrorResponse before any Sync', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    try {
      c.send(serialize.parse({ name: 's_ok', text: 'SELECT 1 AS x', types: [] }), serialize.describe({ type: 'S', name: 's_ok' }), serialize.flush());
      expect(codes(await c.take(3, 5_000))).toBe('1tT');
      c.send(serialize.sync());
      expect(codes(await c.untilReady())).toBe('Z');
      c.send(serialize.parse({ name: 's_bad', text: 'UPDATE webhook SET secret = upper($1)', types: [] }), serialize.describe({ type: 'S', name: 's_bad' }), serialize.flush());
      const err = await c.next(5_000);
      expect(err.code).toBe('E');
      expect(errorOf(err).code).toBe('0A000');
      c.send(serialize.sync());
      const rest = await c.untilReady();
      expect(rest[rest.length - 1]!.code).toBe('Z');
      c.send(serialize.query('SELECT 5'));
      expect(codes(await c.untilReady())).toBe('TDCZ');
    } finally {
      c.end();
    }
  });

  it('pg-cursor over a refused statement rejects its read (instead of hanging), and the client goes on', async () => {
    const c = new pg.Client(proxy.via(db.url));
    await c.connect();
    try {
      const cursor = c.query(new Cursor(`SELECT id FROM webhook WHERE secret = $1`, [SECRET]));
      const read = cursor.read(2).then(
        () => 'resolved',
        (e: pg.DatabaseError) => e.code,
      );
      const outcome = await Promise.race([read, new Promise((r) => setTimeout(() => r('hung'), 5_000))]);
      expect(outcome).toBe('0A000');
      expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await Promise.race([c.end(), new Promise((r) => setTimeout(r, 1_000))]);
    }
  });
});
