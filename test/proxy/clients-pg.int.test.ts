// node-postgres (pg) through the proxy: every scenario runs DIRECT and THROUGH
// pgcmek and must produce the same transcript (rows, field metadata, errors).
import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { both, startTestProxy, type TestProxy } from '../helpers/proxy.js';

// pg-cursor ships no type declarations: this is the slice the tests use.
interface PgCursor extends pg.Submittable {
  read(rows: number): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}
type PgCursorCtor = new (text: string, values?: unknown[]) => PgCursor;
const Cursor = ((await import('pg-cursor' as string)) as { default: PgCursorCtor }).default;

let db: TestDb;
let proxy: TestProxy;

beforeAll(async () => {
  db = await createTestDatabase('clients_pg');
  proxy = await startTestProxy();
});
afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>, extra: Partial<pg.ClientConfig> = {}): Promise<T> {
  const c = new pg.Client({ connectionString: url, ...extra });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** The parts of a result a client can observe, minus nothing. */
function shape(r: pg.QueryResult): unknown {
  return {
    command: r.command,
    rowCount: r.rowCount,
    fields: r.fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID, format: f.format, dataTypeSize: f.dataTypeSize, dataTypeModifier: f.dataTypeModifier })),
    rows: r.rows,
  };
}

/** Every ErrorResponse field pg exposes: a proxy must pass them all through unchanged. */
function errorShape(err: unknown): unknown {
  const e = err as pg.DatabaseError;
  return {
    name: e.name,
    message: e.message,
    code: e.code,
    severity: e.severity,
    detail: e.detail,
    hint: e.hint,
    position: e.position,
    schema: e.schema,
    table: e.table,
    column: e.column,
    constraint: e.constraint,
    routine: e.routine,
  };
}

async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return errorShape(err);
  }
  throw new Error('expected the query to fail');
}

/** Query options pg 8.23 honours but @types/pg does not declare yet. */
function extra(cfg: pg.QueryConfig & { queryMode?: 'extended'; binary?: boolean }): pg.QueryConfig {
  return cfg;
}

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

describe('node-postgres through the proxy', () => {
  it('simple query mode: types, multi-statement, empty query, notices', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, (url) =>
      withClient(url, async (c) => {
        const notices: string[] = [];
        c.on('notice', (n) => notices.push(`${n.severity}:${n.message}`));
        const typed = await c.query(
          `SELECT 1::int AS i, 'héllo ✓ 日本'::text AS t, NULL::text AS n, true AS b, 1.5::numeric AS num,
                  '\\xdeadbeef'::bytea AS by, ARRAY[1,2,3] AS arr, '{"a":[1,{"b":null}]}'::jsonb AS j,
                  '2024-02-29 12:34:56.789+00'::timestamptz AS ts, 9007199254740993::int8 AS big`,
        );
        const multi = (await c.query(
          `CREATE TEMP TABLE s(id int PRIMARY KEY, v text); INSERT INTO s VALUES (1,'a'),(2,'b'); SELECT * FROM s ORDER BY id; UPDATE s SET v = 'c'; DELETE FROM s WHERE id = 1`,
        )) as unknown as pg.QueryResult[];
        const empty = await c.query('');
        await c.query(`DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$`);
        return { typed: shape(typed), multi: multi.map(shape), empty: { command: empty.command, rows: empty.rows }, notices };
      }),
    );
    expect(proxied).toEqual(direct);
    const d = direct as { typed: { rows: Record<string, unknown>[] }; multi: { command: string; rowCount: number }[]; notices: string[] };
    expect(d.typed.rows[0]).toMatchObject({ i: 1, t: 'héllo ✓ 日本', n: null, b: true, num: '1.5', arr: [1, 2, 3], big: '9007199254740993' });
    expect(d.multi.map((m) => `${m.command} ${m.rowCount}`)).toEqual(['CREATE null', 'INSERT 2', 'SELECT 2', 'UPDATE 2', 'DELETE 1']);
    expect(d.notices).toEqual(['NOTICE:hello 42']);
  });

  it('large values and many rows cross TCP chunk boundaries intact', async () => {
    const bigIn = 'ä'.repeat(600_000); // 1.2 MB of UTF-8 going up, inside one Query and one Bind
    const { direct, proxy: proxied } = await both(db.url, proxy, (url) =>
      withClient(url, async (c) => {
        const down = await c.query(`SELECT repeat('xyz', 500000) AS big`);
        const upSimple = await c.query(`SELECT length('${bigIn}') AS n, md5('${bigIn}') AS h`);
        const upBind = await c.query('SELECT length($1::text) AS n, md5($1::text) AS h', [bigIn]);
        const many = await c.query('SELECT g, md5(g::text) AS h FROM generate_series(1, 50000) g');
        return {
          down: sha(down.rows[0].big as string),
          upSimple: upSimple.rows[0],
          upBind: upBind.rows[0],
          many: { count: many.rowCount, digest: sha(many.rows.map((r) => `${r.g}:${r.h}`).join(',')) },
        };
      }),
    );
    expect(proxied).toEqual(direct);
    expect(direct.down).toBe(sha('xyz'.repeat(500_000)));
    expect(direct.upSimple).toEqual({ n: 600_000, h: createHash('md5').update(bigIn).digest('hex') });
    expect(direct.upBind).toEqual(direct.upSimple);
    expect(direct.many.count).toBe(50_000);
  });

  it('extended protocol: parameters of every common type, forced extended mode, SQL PREPARE', async () => {
    const when = new Date('2021-03-04T05:06:07.891Z');
    const { direct, proxy: proxied } = await both(db.url, proxy, (url) =>
      withClient(url, async (c) => {
        const params = await c.query(
          'SELECT $1::int + $2::int AS s, $3::text AS t, $4::text IS NULL AS isnull, $5::bytea AS b, $6::jsonb AS j, $7::timestamptz AS ts, $8::text[] AS arr',
          [40, 2, 'ünïcode ✓', null, Buffer.from([0, 1, 2, 255]), JSON.stringify({ a: 1, nested: ['x'] }), when, ['a', 'b,c', 'd"e']],
        );
        const forced = await c.query(extra({ text: 'SELECT 42 AS answer', queryMode: 'extended' }));
        await c.query('PREPARE sq(int) AS SELECT $1 * $1 AS sq');
        const executed = await c.query('EXECUTE sq(12)');
        await c.query('DEALLOCATE sq');
        return { params: shape(params), forced: shape(forced), executed: shape(executed) };
      }),
    );
    expect(proxied).toEqual(direct);
    const row = (direct.params as { rows: Record<string, unknown>[] }).rows[0];
    expect(row).toEqual({ s: 42, t: 'ünïcode ✓', isnull: true, b: Buffer.from([0, 1, 2, 255]), j: { a: 1, nested: ['x'] }, ts: when, arr: ['a', 'b,c', 'd"e'] });
    expect((direct.executed as { rows: unknown[] }).rows).toEqual([{ sq: 144 }]);
  });

  it('a Bind with 30,000 parameters', async () => {
    const n = 30_000;
    const placeholders = Array.from({ length: n }, (_, i) => `$${i + 1}::int`).join(',');
    const values = Array.from({ length: n }, (_, i) => i);
    const { direct, proxy: proxied } = await both(db.url, proxy, (url) =>
      withClient(url, async (c) => (await c.query(`SELECT array_length(ARRAY[${placeholders}], 1) AS n, (ARRAY[${placeholders}])[${n}] AS last`, values)).rows),
    );
    expect(proxied).toEqual(direct);
    expect(direct).toEqual([{ n, last: n - 1 }]);
  });

  it('named prepared statements are parsed once and re-executed', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, (url) =>
      withClient(url, async (c) => {
        const out: unknown[] = [];
        for (let i = 1; i <= 5; i++) {
          const r = await c.query({ name: 'square', text: 'SELECT $1::int * $1::int AS sq', values: [i] });
          out.push(r.rows[0].sq);
        }
        const r2 = await c.query({ name: 'concat', text: 'SELECT $1::text || $2::text AS c', values: ['a', 'b'] });
        const again = await c.query({ name: 'square', text: 'SELECT $1::int * $1::int AS sq', values: [9] });
        const prepared = await c.query(`SELECT name, statement FROM pg_prepared_statements ORDER BY name`);
        return { out, concat: r2.rows, again: again.rows, prepared: prepared.rows };
      }),
    );
    expect(proxied).toEqual(direct);
    expect(direct.out).toEqual([1, 4, 9, 16, 25]);
    expect(direct.again).toEqual([{ sq: 81 }]);
    expect(direct.prepared).toEqual([
      { name: 'concat', statement: 'SELECT $1::text || $2::text AS c' },
      { name: 'square', statement: 'SELECT $1::int * $1::int AS sq' },
    ]);
  });

  it('binary result format', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, (url) =>
      withClient(url, async (c) => {
        const r = await c.query(
          extra({
            text: 'SELECT $1::int4 AS i, $2::text AS t, 3.5::float8 AS f, true AS b, NULL::int AS n, 1234567890123::int8 AS big',
            values: [7, 'bin ✓'],
            binary: true,
          }),
        );
        return shape(r);
      }),
    );
    expect(proxied).toEqual(direct);
    const d = direct as { fields: { format: string }[]; rows: Record<string, unknown>[] };
    expect(d.fields.every((f) => f.format === 'binary')).toBe(true);
    expect(d.rows[0]).toMatchObject({ i: 7, t: 'bin ✓', f: 3.5, b: true, n: null });
  });

  it('pipelined queries (pipeline mode): 200 in flight, one failing in the middle', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, (url) =>
      withClient(
        url,
        async (c) => {
          const pending = Array.from({ length: 200 }, (_, i) => {
            if (i === 100) return c.query('SELECT 1/0 AS boom').then(() => 'no error', (e: pg.DatabaseError) => `error ${e.code}`);
            if (i % 3 === 0) return c.query(`SELECT ${i} AS n`).then((r) => r.rows[0].n as number);
            return c.query('SELECT $1::int AS n', [i]).then((r) => r.rows[0].n as number);
          });
          const results = await Promise.all(pending);
          const after = await c.query('SELECT 1 AS ok');
          return { results, after: after.rows };
        },
        { pipeline: true },
      ),
    );
    expect(proxied).toEqual(direct);
    expect(direct.results[100]).toBe('error 22012');
    expect(direct.results.filter((r, i) => i !== 100 && r !== i)).toEqual([]);
    expect(direct.after).toEqual([{ ok: 1 }]);
  });

  it('queued queries without awaiting (default mode)', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, (url) =>
      withClient(url, async (c) => {
        const pending = Array.from({ length: 100 }, (_, i) => c.query('SELECT $1::int * 2 AS n', [i]).then((r) => r.rows[0].n as number));
        return Promise.all(pending);
      }),
    );
    expect(proxied).toEqual(direct);
    expect(direct).toEqual(Array.from({ length: 100 }, (_, i) => i * 2));
  });

  it('pg-cursor reads 100 rows in batches of 10, then closes and the session goes on', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, (url) =>
      withClient(url, async (c) => {
        const cursor = c.query(new Cursor('SELECT g AS n, repeat(g::text, 3) AS s FROM generate_series(1, 100) g WHERE g > $1', [0]));
        const batches: number[] = [];
        const all: unknown[] = [];
        for (;;) {
          const rows = await cursor.read(10);
          if (rows.length === 0) break;
          batches.push(rows.length);
          all.push(...rows);
        }
        await cursor.close();
        // A cursor closed early (portal still open) must not disturb the next query either.
        const early = c.query(new Cursor('SELECT g FROM generate_series(1, 1000) g'));
        const first = await early.read(10);
        await early.close();
        const after = await c.query('SELECT 2 AS ok');
        return { batches, all, first, after: after.rows };
      }),
    );
    expect(proxied).toEqual(direct);
    expect(direct.batches).toEqual(Array(10).fill(10));
    expect(direct.all).toHaveLength(100);
    expect(direct.all[99]).toEqual({ n: 100, s: '100100100' });
    expect(direct.first).toHaveLength(10);
    expect(direct.after).toEqual([{ ok: 2 }]);
  });

  it('transactions: commit, rollback, savepoints, failed-transaction state', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, (url) =>
      withClient(url, async (c) => {
        // A plain table (not TEMP): error fields name the schema, and pg_temp_N differs per session.
        await c.query('CREATE TABLE tx(id int PRIMARY KEY)');
        await c.query('BEGIN');
        await c.query('INSERT INTO tx VALUES (1)');
        await c.query('COMMIT');
        await c.query('BEGIN');
        await c.query('INSERT INTO tx VALUES (2)');
        await c.query('ROLLBACK');
        await c.query('BEGIN');
        await c.query('INSERT INTO tx VALUES (3)');
        await c.query('SAVEPOINT sp');
        const dup = await caught(c.query('INSERT INTO tx VALUES (1)'));
        const aborted = await caught(c.query('SELECT 1'));
        await c.query('ROLLBACK TO SAVEPOINT sp');
        await c.query('INSERT INTO tx VALUES (4)');
        await c.query('COMMIT');
        // An error inside BEGIN without savepoint: COMMIT answers ROLLBACK.
        await c.query('BEGIN');
        await caught(c.query('SELECT * FROM no_such_table'));
        const commit = await c.query('COMMIT');
        const rows = await c.query('SELECT id FROM tx ORDER BY id');
        await c.query('DROP TABLE tx');
        return { dup, aborted, commitCommand: commit.command, ids: rows.rows.map((r) => r.id) };
      }),
    );
    expect(proxied).toEqual(direct);
    expect(direct.ids).toEqual([1, 3, 4]);
    expect(direct.dup).toMatchObject({ code: '23505', constraint: 'tx_pkey', detail: 'Key (id)=(1) already exists.' });
    expect(direct.aborted).toMatchObject({ code: '25P02' });
    expect(direct.commitCommand).toBe('ROLLBACK');
  });

  it('errors mid-flight keep every field and the session keeps working', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, (url) =>
      withClient(url, async (c) => {
        const errors = [
          await caught(c.query('SELEC 1')),
          await caught(c.query('SELECT 1/0')),
          await caught(c.query('SELECT $1::int', ['not a number'])),
          await caught(c.query({ name: 'bad', text: 'SELECT nope FROM pg_class', values: [] })),
          await caught(c.query(`DO $$ BEGIN RAISE EXCEPTION 'custom' USING ERRCODE = 'P0001', DETAIL = 'd', HINT = 'h'; END $$`)),
          await caught(c.query('SELECT 1; SELECT 1/0; SELECT 3')),
        ];
        const after = await c.query('SELECT $1::text AS still', ['alive']);
        return { errors, after: after.rows };
      }),
    );
    expect(proxied).toEqual(direct);
    expect((direct.errors as { code: string }[]).map((e) => e.code)).toEqual(['42601', '22012', '22P02', '42703', 'P0001', '22012']);
    expect(direct.errors[0]).toMatchObject({ position: '1' });
    expect(direct.errors[4]).toMatchObject({ detail: 'd', hint: 'h', message: 'custom' });
    expect(direct.after).toEqual([{ still: 'alive' }]);
  });

  it('startup parameters reach the server (application_name, options)', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, (url) =>
      withClient(
        url,
        async (c) => {
          const r = await c.query(`SELECT current_setting('application_name') AS app, current_setting('search_path') AS sp, current_database() = $1 AS samedb, current_user AS usr`, [db.name]);
          return r.rows[0];
        },
        { application_name: 'pgcmek-compat', options: '-c search_path=custom_sp,public' },
      ),
    );
    expect(proxied).toEqual(direct);
    expect(direct).toEqual({ app: 'pgcmek-compat', sp: 'custom_sp,public', samedb: true, usr: 'postgres' });
  });

  it('pg.Pool with many short checkouts', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, async (url) => {
      const pool = new pg.Pool({ connectionString: url, max: 8 });
      try {
        const results = await Promise.all(Array.from({ length: 64 }, (_, i) => pool.query('SELECT $1::int + 1 AS n', [i]).then((r) => r.rows[0].n as number)));
        return results;
      } finally {
        await pool.end();
      }
    });
    expect(proxied).toEqual(direct);
    expect(direct).toEqual(Array.from({ length: 64 }, (_, i) => i + 1));
  });
});
