import { beforeAll, describe, expect, test } from 'vitest';
import { initSql, SqlAnalyzer } from '../../src/sql/index.js';
import { CATALOG, expectPlan, expectReject, makeAnalyzer, TABLES } from './fixtures.js';

beforeAll(() => initSql());

describe('cache', () => {
  test('analyses are cached by text', () => {
    const a = makeAnalyzer();
    const sql = "INSERT INTO users (ssn) VALUES ('x')";
    const first = a.analyze(sql);
    expect(a.analyze(sql)).toBe(first);
    expect(a.analyze(Buffer.from(sql))).toBe(first);
    expect(a.stats).toMatchObject({ hits: 2, misses: 1 });
  });

  test('a shape whose literal changes every time stops filling the text cache; texts that come back are still cached', () => {
    const a = makeAnalyzer(CATALOG, { cacheSize: 10_000 });
    const lookup = (i: number) => `SELECT id FROM users WHERE email = 'user${i}@example.com'`;
    for (let i = 0; i < 2_000; i++) {
      const plan = expectPlan(a.analyze(lookup(i)));
      expect(plan.literals).toHaveLength(0); // email is not encrypted: nothing to rewrite, but the plan is right
    }
    expect(a.stats.shapeHits).toBe(1_998); // every text after the first two was planned from the shape
    // 64 admitted freely, then one in 16 as a probe: ~180, not 2,000.
    expect(a.cachedEntries).toBeLessThan(250);
    // A shape whose texts do come back keeps being cached: every one of them is then a hit.
    const b = makeAnalyzer(CATALOG, { cacheSize: 10_000 });
    const insert = (i: number) => `INSERT INTO users (ssn) VALUES ('${i % 100}')`;
    for (let i = 0; i < 1_000; i++) b.analyze(insert(i));
    expect(b.cachedEntries).toBe(100);
    const hits = b.stats.hits;
    for (let i = 0; i < 1_000; i++) b.analyze(insert(i));
    expect(b.stats.hits - hits).toBe(1_000);
  });

  test('when texts stop repeating, the text cache is mostly not probed before the shapes; a text no template serves is still found there', () => {
    const a = makeAnalyzer(CATALOG, { cacheSize: 10_000 });
    const lookup = (i: number) => Buffer.from(`SELECT id FROM users WHERE email = 'user${i}@example.com'`);
    for (let i = 0; i < 64; i++) a.analyze(lookup(i)); // admitted freely: these are in the text cache
    for (let i = 64; i < 3_000; i++) a.analyze(lookup(i));
    // Texts that are cached and served by the shape's template: only sampled probes find them.
    const hits = a.stats.hits;
    for (let r = 0; r < 4; r++) for (let i = 0; i < 64; i++) expectPlan(a.analyze(lookup(i)));
    expect(a.stats.hits - hits).toBeLessThan(64);
    // A text of a shape seen once (no template yet) is looked up before it would be parsed.
    const once = Buffer.from("INSERT INTO users (ssn, email) VALUES ('1', 'x@example.com')");
    const first = a.analyze(once);
    const before = { ...a.stats };
    for (let r = 0; r < 16; r++) expect(a.analyze(once)).toBe(first);
    expect(a.stats.hits - before.hits).toBe(16);
    expect(a.stats.shapeHits).toBe(before.shapeHits);
    // Texts that come back make it probe every text first again.
    for (let r = 0; r < 40; r++) for (let i = 0; i < 64; i++) a.analyze(lookup(i));
    const again = a.stats.hits;
    for (let i = 0; i < 64; i++) a.analyze(lookup(i));
    expect(a.stats.hits - again).toBe(64);
  });

  test('a catalog change invalidates plans that depended on the column order', () => {
    const catalog: Record<string, string[]> = { ...CATALOG };
    const a = makeAnalyzer(catalog);
    const sql = "INSERT INTO users VALUES (1, 'n', 's', 'e')";
    const before = expectPlan(a.analyze(sql)).literals.map((l) => `${l.target.column}=${l.value}`);
    expect(before).toEqual(['ssn=s', 'email=e']);
    catalog['public.users'] = ['id', 'ssn', 'name', 'email', 'notes']; // the table was rebuilt: new column order
    expect(expectPlan(a.analyze(sql)).literals.map((l) => `${l.target.column}=${l.value}`)).toEqual(['ssn=n', 'email=e']);
    delete catalog['public.users'];
    expectReject(a.analyze(sql), 'unknown_columns');
  });

  test('bounded: a text read again outlives one that was not; long texts are not cached', () => {
    const a = makeAnalyzer(CATALOG, { cacheSize: 2 });
    a.analyze("INSERT INTO users (ssn) VALUES ('1')");
    a.analyze("INSERT INTO users (ssn) VALUES ('2')");
    a.analyze("INSERT INTO users (ssn) VALUES ('1')"); // refresh 1
    a.analyze("INSERT INTO users (ssn) VALUES ('3')"); // evicts 2
    expect(a.cachedEntries).toBe(2);
    a.analyze("INSERT INTO users (ssn) VALUES ('1')");
    expect(a.stats.hits).toBe(2);
    a.analyze("INSERT INTO users (ssn) VALUES ('2')");
    expect(a.stats.misses).toBe(4);

    const b = new SqlAnalyzer({ tables: TABLES, columnsOf: () => undefined, maxCachedTextLength: 100 });
    const long = `INSERT INTO users (ssn) VALUES ${Array.from({ length: 50 }, (_, i) => `('v${i}')`).join(', ')}`;
    expect(expectPlan(b.analyze(long)).literals).toHaveLength(50);
    expect(b.cachedEntries).toBe(0);
  });
});

describe('DDL detection', () => {
  test('DDL on configured tables', () => {
    const a = makeAnalyzer();
    expect(expectPlan(a.analyze('ALTER TABLE users ADD COLUMN x text')).isDdl).toBe(true);
    expect(expectPlan(a.analyze('CREATE INDEX ON users (id)')).isDdl).toBe(true);
    // The new name is not a relation reference: flagged as DDL only (the catalog refresh maps it).
    expect(a.analyze('ALTER TABLE plain RENAME TO users')).toEqual({ kind: 'passthrough', isDdl: true });
    expect(expectPlan(a.analyze('SELECT * INTO users_copy FROM users')).isDdl).toBe(true);
    expect(expectPlan(a.analyze('SELECT 1; DROP TABLE users')).statements.map((s) => s.isDdl)).toEqual([false, true]);
    expect(expectPlan(a.analyze('SELECT id FROM users')).isDdl).toBe(false);
  });

  test('DDL elsewhere is flagged without a plan', () => {
    const a = makeAnalyzer();
    expect(a.analyze('CREATE TABLE orders (id int)')).toEqual({ kind: 'passthrough', isDdl: true });
    expect(a.analyze('drop view v')).toEqual({ kind: 'passthrough', isDdl: true });
    expect(a.analyze("SELECT 'create table'")).toEqual({ kind: 'passthrough', isDdl: false });
    expect(a.analyze('SELECT created_at FROM orders')).toEqual({ kind: 'passthrough', isDdl: false });
    expect(a.analyze('CREATE TABLE broken (')).toEqual({ kind: 'passthrough', isDdl: true });
  });
});

describe('fail closed', () => {
  test('unparsable statements that mention an encrypted table are refused without echoing them', () => {
    const a = makeAnalyzer();
    const e = expectReject(a.analyze("INSERT INTO users (ssn VALUES ('TOPSECRET')"), 'syntax_error');
    expect(e.code).toBe('42601');
    expect(e.message).toContain('public.users');
    expect(JSON.stringify(e)).not.toContain('TOPSECRET');
    expect(e.position).toBeGreaterThan(1);
    expect(a.analyze("INSERT INTO orders (x VALUES ('y')")).toEqual({ kind: 'passthrough', isDdl: false });
  });

  test('bytes that are not UTF-8', () => {
    const a = makeAnalyzer();
    const bad = Buffer.concat([Buffer.from("INSERT INTO users (ssn) VALUES ('"), Buffer.from([0xe9, 0xff]), Buffer.from("')")]);
    const e = expectReject(a.analyze(bad), 'invalid_utf8');
    expect(e.code).toBe('22021');
    expect(a.analyze(Buffer.concat([Buffer.from("SELECT '"), Buffer.from([0xff]), Buffer.from("'")])).kind).toBe('passthrough');
  });

  test('NUL bytes and catalog failures are refused', () => {
    expect(makeAnalyzer().analyze("INSERT INTO users (ssn) VALUES ('a')\0'b'")).toMatchObject({ kind: 'reject', error: { code: '08P01' } });
    const a = new SqlAnalyzer({
      tables: TABLES,
      columnsOf: () => {
        throw new Error('catalog down');
      },
    });
    const e = expectReject(a.analyze("INSERT INTO users VALUES (1, 'n', 'TOPSECRET')"), 'internal');
    expect(e.code).toBe('XX000');
    expect(JSON.stringify(e)).not.toContain('TOPSECRET');
  });

  test('no configured tables: everything passes through', () => {
    const a = new SqlAnalyzer({ tables: [], columnsOf: () => undefined });
    expect(a.analyze("INSERT INTO users (ssn) VALUES ('x')")).toEqual({ kind: 'passthrough', isDdl: false });
    expect(a.analyze('CMEK status').kind).toBe('admin');
  });
});
