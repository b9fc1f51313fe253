// The catalog against a real server: RowDescription's (table OID, attnum) for
// tables, children, views and materialized views resolves to the configured policy.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogQuery, resolveCatalog, type ResolvedCatalog } from '../../src/catalog/index.js';
import type { ColumnPolicy, TablePolicy } from '../../src/config/types.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';

const col = (column: string, extra: Partial<ColumnPolicy> = {}): ColumnPolicy => ({
  column,
  searchable: false,
  onDecryptError: 'error',
  encryptEmpty: false,
  ...extra,
});

const POLICIES: TablePolicy[] = [
  { schema: 'public', table: 'webhook', columns: [col('secret'), col('token')] },
  { schema: 'App Data', table: 'Users', columns: [col('Email Addr'), col('ssn')] },
  { schema: 'public', table: 'workspace', columns: [col('settings', { jsonPaths: [['smtp', 'password']] })] },
  { schema: 'public', table: 'measurements', columns: [col('note')] },
  { schema: 'public', table: 'base', columns: [col('secret')] },
  { schema: 'public', table: 'gaps', columns: [col('secret')] },
  { schema: 'public', table: 'domained', columns: [col('secret')] },
  { schema: 'public', table: 'ghost', columns: [col('secret')] },
  { schema: 'public', table: 'webhook_v', columns: [col('s')] },
  { schema: 'public', table: 'bad', columns: [col('n'), col('c'), col('arr'), col('tiny'), col('short'), col('nope'), col('txt', { jsonPaths: [['a']] })] },
];

let db: TestDb;
let cat: ResolvedCatalog;

/** The (tableID, columnID) pairs a RowDescription reports for a query, by field name. */
async function fieldsOf(sql: string): Promise<Map<string, { tableID: number; columnID: number }>> {
  const r = await db.client.query({ text: sql, rowMode: 'array' });
  return new Map(r.fields.map((f) => [f.name, { tableID: f.tableID, columnID: f.columnID }]));
}

async function policyOfField(sql: string, name: string) {
  const f = (await fieldsOf(sql)).get(name);
  if (!f) throw new Error(`no field ${name}`);
  return cat.lookup(f.tableID, f.columnID);
}

beforeAll(async () => {
  db = await createTestDatabase('cat');
  await db.client.query(`
    CREATE TABLE webhook (id bigint PRIMARY KEY, url text, secret text, token varchar);
    CREATE SCHEMA "App Data";
    CREATE TABLE "App Data"."Users" (id int PRIMARY KEY, "Email Addr" text, ssn text, email text);
    CREATE TABLE workspace (id int PRIMARY KEY, settings jsonb);
    -- partitions, one attached with a different column order (different attnums)
    CREATE TABLE measurements (id int, at date, note text) PARTITION BY RANGE (at);
    CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    CREATE TABLE measurements_2025 (note text, at date, id int);
    ALTER TABLE measurements ATTACH PARTITION measurements_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    -- plain inheritance, the child adds a column of its own
    CREATE TABLE base (id int, secret text);
    CREATE TABLE derived (extra text) INHERITS (base);
    -- dropped columns leave attnum gaps
    CREATE TABLE gaps (a int, dropme text, secret text, b int);
    ALTER TABLE gaps DROP COLUMN dropme;
    ALTER TABLE gaps DROP COLUMN a;
    CREATE DOMAIN secret_text AS text CHECK (length(VALUE) > 0);
    CREATE DOMAIN secret_text2 AS secret_text;
    CREATE TABLE domained (id int, secret secret_text2);
    CREATE TABLE bad (n int, c char(300), arr text[], tiny varchar(20), short varchar(300), txt text);
    -- views
    CREATE VIEW webhook_v AS SELECT id, secret AS s, upper(secret) AS u, secret || 'x' AS cat, url FROM webhook;
    CREATE VIEW webhook_vv AS SELECT s AS s2, id FROM webhook_v;
    CREATE VIEW webhook_sub AS SELECT q.tok FROM (SELECT token AS tok FROM webhook) q;
    CREATE VIEW webhook_join AS SELECT w.secret, u."Email Addr" AS mail FROM webhook w JOIN "App Data"."Users" u ON u.id = w.id;
    CREATE VIEW webhook_cast AS SELECT secret::varchar AS sv FROM webhook;
    CREATE MATERIALIZED VIEW webhook_mv AS SELECT id, secret FROM webhook;
    CREATE VIEW "Users View" AS SELECT "Email Addr", email FROM "App Data"."Users";
    CREATE VIEW other_v AS SELECT 1 AS one;
  `);
  cat = await resolveCatalog(db.client, POLICIES);
});

afterAll(async () => {
  await db?.drop();
});

describe('catalog resolution', () => {
  it('resolves configured columns of plain tables, by their RowDescription origin', async () => {
    const secret = await policyOfField('SELECT * FROM webhook', 'secret');
    expect(secret).toMatchObject({ schema: 'public', table: 'webhook', column: 'secret', via: 'table', typeName: 'text', attnum: 3 });
    expect(await policyOfField('SELECT token FROM webhook', 'token')).toMatchObject({ typeName: 'character varying' });
    expect(await policyOfField('SELECT url FROM webhook', 'url')).toBeUndefined();
    expect(await policyOfField('SELECT id FROM webhook', 'id')).toBeUndefined();
  });

  it('matches quoted, mixed-case names and schemas exactly', async () => {
    const hit = await policyOfField('SELECT * FROM "App Data"."Users"', 'Email Addr');
    expect(hit).toMatchObject({ schema: 'App Data', table: 'Users', column: 'Email Addr' });
    expect(await policyOfField('SELECT * FROM "App Data"."Users"', 'email')).toBeUndefined();
    expect(cat.columnsOf('App Data', 'Users')).toEqual(['id', 'Email Addr', 'ssn', 'email']);
    // One frozen array per relation: the analyzer's per-statement catalog check compares it by identity.
    expect(cat.columnsOf('App Data', 'Users')).toBe(cat.columnsOf('App Data', 'Users'));
    expect(Object.isFrozen(cat.columnsOf('App Data', 'Users'))).toBe(true);
    expect(cat.columnsOf('App Data', 'users')).toBeUndefined();
  });

  it('keeps json paths on jsonb columns', async () => {
    const hit = await policyOfField('SELECT settings FROM workspace', 'settings');
    expect(hit?.policy.jsonPaths).toEqual([['smtp', 'password']]);
  });

  it('maps view columns, aliases and views over views; not expressions or casts', async () => {
    const f = await fieldsOf('SELECT * FROM webhook_v');
    expect(cat.lookup(f.get('s')!.tableID, f.get('s')!.columnID)).toMatchObject({
      table: 'webhook_v',
      column: 's',
      via: 'view',
      source: { schema: 'public', table: 'webhook', column: 'secret' },
    });
    for (const name of ['u', 'cat', 'url', 'id']) expect(cat.lookup(f.get(name)!.tableID, f.get(name)!.columnID)).toBeUndefined();
    expect(await policyOfField('SELECT * FROM webhook_vv', 's2')).toMatchObject({ via: 'view', source: { column: 'secret' } });
    expect(await policyOfField('SELECT * FROM webhook_sub', 'tok')).toMatchObject({ source: { column: 'token' } });
    expect(await policyOfField('SELECT * FROM webhook_join', 'secret')).toMatchObject({ source: { table: 'webhook' } });
    expect(await policyOfField('SELECT * FROM webhook_join', 'mail')).toMatchObject({ source: { table: 'Users', column: 'Email Addr' } });
    expect(await policyOfField('SELECT * FROM "Users View"', 'Email Addr')).toMatchObject({ table: 'Users View' });
    expect(await policyOfField('SELECT * FROM "Users View"', 'email')).toBeUndefined();
    expect(await policyOfField('SELECT * FROM webhook_cast', 'sv')).toBeUndefined();
  });

  it('maps materialized view columns', async () => {
    expect(await policyOfField('SELECT * FROM webhook_mv', 'secret')).toMatchObject({ via: 'matview', table: 'webhook_mv' });
  });

  it('includes partitions and inheritance children by column name', async () => {
    const parent = await policyOfField('SELECT * FROM measurements', 'note');
    expect(parent).toMatchObject({ via: 'table', attnum: 3 });
    const p24 = await policyOfField('SELECT * FROM measurements_2024', 'note');
    expect(p24).toMatchObject({ via: 'child', table: 'measurements_2024', source: { table: 'measurements' } });
    const p25 = await policyOfField('SELECT * FROM measurements_2025', 'note');
    expect(p25).toMatchObject({ via: 'child', attnum: 1 });
    expect(cat.columnsOf('public', 'measurements_2025')).toEqual(['note', 'at', 'id']);
    expect(await policyOfField('SELECT * FROM derived', 'secret')).toMatchObject({ via: 'child', table: 'derived' });
    expect(await policyOfField('SELECT * FROM derived', 'extra')).toBeUndefined();
  });

  it('handles dropped columns (attnum gaps)', async () => {
    expect(cat.columnsOf('public', 'gaps')).toEqual(['secret', 'b']);
    expect(await policyOfField('SELECT * FROM gaps', 'secret')).toMatchObject({ attnum: 3 });
    expect(cat.relation('public', 'gaps')?.columns.map((c) => [c.name, c.attnum, !!c.policy])).toEqual([
      ['secret', 3, true],
      ['b', 4, false],
    ]);
  });

  it('accepts domains over text', async () => {
    expect(await policyOfField('SELECT secret FROM domained', 'secret')).toMatchObject({ typeName: 'secret_text2' });
  });

  it('warns about what does not exist, errors on types that cannot hold an envelope', () => {
    expect(cat.warnings).toContainEqual(expect.stringContaining('"public"."ghost" does not exist'));
    expect(cat.warnings).toContainEqual(expect.stringContaining('"public"."bad"."nope" does not exist'));
    expect(cat.warnings).toContainEqual(expect.stringContaining('"public"."webhook_v" is a view'));
    expect(cat.warnings).toContainEqual(expect.stringMatching(/"public"\."bad"\."short".*longer than \d+ bytes/));
    const errs = cat.errors.join('\n');
    expect(errs).toMatch(/"bad"\."n": type integer cannot hold/);
    expect(errs).toMatch(/"bad"\."c": type character\(300\) cannot hold.*pads/);
    expect(errs).toMatch(/"bad"\."arr": type text\[\] cannot hold/);
    expect(errs).toMatch(/"bad"\."tiny": type character varying\(20\) is too short/);
    expect(errs).toMatch(/"bad"\."txt": json_paths needs a json or jsonb column/);
    expect(cat.errors).toHaveLength(5);
    expect(cat.lookup(0, 0)).toBeUndefined();
  });

  it('runs as an unprivileged role, under a hostile search_path, without changing session state', async () => {
    await db.client.query(`DROP ROLE IF EXISTS cat_nobody; CREATE ROLE cat_nobody LOGIN PASSWORD 'pw'`);
    const u = new URL(db.url);
    u.username = 'cat_nobody';
    u.password = 'pw';
    const c = new pg.Client(u.toString());
    await c.connect();
    try {
      // A role that can read none of the tables still sees the catalog.
      await c.query(`CREATE SCHEMA IF NOT EXISTS evil`).catch(() => {});
      await c.query(`SET search_path = evil, public`);
      const before = await c.query(`SELECT current_setting('search_path') AS sp, txid_current_if_assigned() AS x`);
      const mine = await resolveCatalog(c, POLICIES);
      expect(mine.columns.length).toBe(cat.columns.length);
      expect(mine.errors).toEqual(cat.errors);
      const after = await c.query(`SELECT current_setting('search_path') AS sp, txid_current_if_assigned() AS x`);
      expect(after.rows).toEqual(before.rows);
      // The statement is a plain SELECT: it runs in a read-only transaction too.
      await c.query('BEGIN READ ONLY');
      await c.query(catalogQuery(POLICIES));
      await c.query('COMMIT');
    } finally {
      await c.end();
      await db.client.query('DROP ROLE cat_nobody');
    }
  });

  it('sees DDL after a fresh resolution (what invalidate() triggers)', async () => {
    await db.client.query(`CREATE TABLE ghost (id int, secret text); CREATE VIEW ghost_v AS SELECT secret FROM ghost`);
    const again = await resolveCatalog(db.client, POLICIES);
    expect(again.warnings.join('\n')).not.toMatch(/ghost/);
    const f = await fieldsOf('SELECT * FROM ghost_v');
    expect(again.lookup(f.get('secret')!.tableID, f.get('secret')!.columnID)).toMatchObject({ via: 'view' });
  });

  it('quotes configured names safely whatever standard_conforming_strings says', async () => {
    await db.client.query(`CREATE TABLE "we'ird\\name" (id int, "se'cr\\et" text)`);
    const weird: TablePolicy[] = [{ schema: 'public', table: "we'ird\\name", columns: [col("se'cr\\et")] }];
    for (const scs of ['on', 'off']) {
      await db.client.query(`SET standard_conforming_strings = ${scs}`);
      const c = await resolveCatalog(db.client, weird);
      expect(c.warnings).toEqual([]);
      expect(c.columnsOf('public', "we'ird\\name")).toEqual(['id', "se'cr\\et"]);
    }
    await db.client.query(`RESET standard_conforming_strings`);
  });

  it('resolves nothing (and does not fail) for an empty configuration', async () => {
    const none = await resolveCatalog(db.client, []);
    expect(none.columns).toEqual([]);
    expect(none.warnings).toEqual([]);
  });

  it('is cheap', async () => {
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) await db.client.query(catalogQuery(POLICIES));
    expect((performance.now() - t0) / 20).toBeLessThan(50);
  });
});
