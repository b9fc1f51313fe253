// Plans reused by shape (src/sql/templates.ts) must be exactly the plans a full
// analysis gives. For many generated statements — writes, lookups, IN lists,
// multi-statement texts, E'' strings with quotes and backslashes, dollar
// quotes, comments holding quotes, values that shape the plan (ORDER BY 2,
// JSON paths, COPY options, '' vs a value) — an analyzer with the shape cache
// is compared with a fresh full analysis of every text.
import { beforeAll, describe, expect, test } from 'vitest';
import { initSql, SqlAnalyzer, type SqlPlan } from '../../src/sql/index.js';
import { sameValue } from '../../src/sql/templates.js';
import { CATALOG, expectPlan, makeAnalyzer, TABLES } from './fixtures.js';
import { quote, randomValue, rng, type LiteralForm, type Rng } from './shape-gen.js';

beforeAll(() => initSql());

const show = (p: SqlPlan) => JSON.stringify(p, (_k, v) => (v instanceof Map ? [...v] : v));

/**
 * What a family fills its holes with. Choices that make the shape (a literal's
 * spelling, empty or not, a number's kind, which alternative) come from `st`,
 * the values from `v`: a group of texts replays one `st` with new values, so
 * texts of one shape recur, as they do in an application's traffic.
 */
interface Holes {
  /** A string literal: its form and emptiness from the structure, its value free. */
  S(form?: LiteralForm): string;
  /** A numeric literal. */
  N(): string;
  /** Whitespace, sometimes a comment holding quotes and comment markers. */
  W(): string;
  /** A structural choice. */
  pick<T>(xs: readonly T[]): T;
}

function holes(st: Rng, v: Rng): Holes {
  const nonEmpty = (s: string) => s || 'x';
  return {
    S: (form) => {
      const f = form ?? st.pick(['plain', 'plain', 'escape', 'dollar'] as const);
      return quote(v, st.int(8) === 0 ? '' : nonEmpty(randomValue(v)), f);
    },
    N: () => {
      switch (st.int(4)) {
        case 0:
          return String(v.int(100000));
        case 1:
          return v.pick(['0', '1', '7', '42', '007', '2147483647']);
        case 2:
          return v.pick(['2147483648', '99999999999']);
        default:
          return v.pick(['1.5', '1e3', '.5', '3.']);
      }
    },
    W: () => st.pick([' ', ' ', '\n  ', " /* it's a \"c\" -- $$ */ ", " -- it's 'c' /* \n", '\t']).replace('c', v.pick(['c', "'q'", '$$', '"'])),
    pick: (xs) => st.pick(xs),
  };
}

type Family = (h: Holes) => string;

const FAMILIES: Record<string, Family> = {
  'django lookup': (h) => {
    const { S, N, W } = h;
    return `SELECT "users"."id", "users"."ssn" FROM "users" WHERE "users"."email" = ${S()}${W()}LIMIT ${N()}`;
  },
  'insert with column list': (h) => {
    const { S, N, W } = h;
    return `INSERT INTO users (id, name, ssn, email, notes)${W()}VALUES (${N()}, ${S()}, ${S()}, ${S()}, ${S()}) RETURNING id`;
  },
  'positional multi-row insert': (h) => {
    const { S, N } = h;
    return `INSERT INTO users VALUES (${N()}, ${S()}, ${S()}, ${S()}, ${S()}), (${N()}, ${S()}, ${S()}, ${S()}, ${S()})`;
  },
  'update with IN list': (h) => {
    const { S, N, W } = h;
    return `UPDATE users SET ssn = ${S()}, name = ${S()}${W()}WHERE id = ${N()} AND email IN (${S()}, ${S()}, ${S()})`;
  },
  'delete, <> and IS NOT DISTINCT FROM': (h) => {
    const { S } = h;
    return `DELETE FROM users WHERE email <> ${S()} OR email IS NOT DISTINCT FROM ${S()}`;
  },
  'ANY(ARRAY[…])': (h) => {
    const { S } = h;
    return `SELECT * FROM app_model WHERE token = ANY(ARRAY[${S()}, ${S()}]) AND title = ${S()}`;
  },
  'multi-statement': (h) => {
    const { S, N, W } = h;
    return `INSERT INTO users (id, ssn) VALUES (${N()}, ${S()});${W()}SELECT id FROM users WHERE email = ${S()};UPDATE app_model SET secret = ${S()} WHERE token = ${S()}${h.pick(['', ';', ' ; '])}`;
  },
  'ORDER BY position': (h) => `SELECT id, ssn, name FROM users WHERE email = ${h.S()} ORDER BY ${h.pick(['1', '2', '3'])}`,
  'JSON paths': (h) => {
    const { S } = h;
    const path = h.pick(["'pin'", "'label'", "'card'", "E'pin'", '$$pin$$']);
    return h.pick([true, false])
      ? `SELECT id FROM app.secrets WHERE doc->>${path} = ${S()}`
      : `SELECT id FROM app.secrets WHERE doc #>> ${h.pick(["'{card,number}'", "'{a,b}'", "'{card}'"])} = ${S()}`;
  },
  'COPY options and COPY (query)': (h) =>
    h.pick([true, false])
      ? `COPY users (ssn, name) FROM STDIN WITH (FORMAT csv, DELIMITER ${h.pick(["','", "';'", "E'\\t'", "'|'"])}, NULL ${h.pick(["'\\N'", "'x'", "'NULL'"])})`
      : `COPY (SELECT ssn, name FROM users WHERE name = ${h.S()}) TO STDOUT WITH (FORMAT ${h.pick(['csv', 'text'])})`,
  casts: (h) => `INSERT INTO users (ssn) VALUES (${h.S()}::${h.pick(['text', 'varchar', 'varchar(40)', 'bytea', '"char"', 'citext'])})`,
  'float(n) decided by the grammar': (h) =>
    h.pick([true, false])
      ? `INSERT INTO users (ssn) VALUES (CAST(${h.S()} AS float(${h.pick(['10', '24', '30', '53'])})))`
      : `SELECT CAST(${h.S()} AS float(${h.pick(['10', '24', '30', '53'])})) FROM users WHERE email = ${h.S()}`,
  'value kinds': (h) => {
    const { S, N } = h;
    return `INSERT INTO users (ssn, notes) VALUES (${h.pick([S(), N(), 'NULL', 'DEFAULT', "''", S('escape')])}, ${h.pick([S(), "''", 'NULL'])})`;
  },
  'data-modifying CTE': (h) => {
    const { S, N } = h;
    return `WITH x AS (INSERT INTO users (ssn, email) VALUES (${S()}, ${S()}) RETURNING id) SELECT * FROM x WHERE id > ${N()}`;
  },
  'ON CONFLICT': (h) => {
    const { S } = h;
    return `INSERT INTO users (email, ssn) VALUES (${S()}, ${S()}) ON CONFLICT (email) DO UPDATE SET ssn = ${S()}`;
  },
  MERGE: (h) => {
    const { S, N } = h;
    return `MERGE INTO users u USING (VALUES (${N()}, ${S()}, ${S()})) AS s(id, e, x) ON u.id = s.id WHEN MATCHED AND u.email = ${S()} THEN UPDATE SET ssn = s.x WHEN NOT MATCHED THEN INSERT (id, email, ssn) VALUES (s.id, s.e, s.x)`;
  },
  'PREPARE / EXECUTE': (h) => {
    const { S, N } = h;
    const name = `p${h.pick([0, 1])}`;
    return h.pick([true, false])
      ? `PREPARE ${name} AS INSERT INTO users (ssn, name) VALUES ($1, ${S()}); EXECUTE ${name}(${S()}, ${S()})`
      : `EXECUTE ${name}(${h.pick([S(), N(), 'NULL', '$1'])}, ${S()}); SELECT * FROM users WHERE id = ${N()}`;
  },
  'DO blocks': (h) =>
    `DO ${h.pick(["'BEGIN PERFORM 1; END'", "$$BEGIN INSERT INTO users (ssn) VALUES ('x'); END$$", "$x$BEGIN PERFORM 2; END$x$", "'SELECT 1 FROM users'"])}`,
  'unconfigured, values mention a table': (h) => {
    const { S } = h;
    return `SELECT ${S()} FROM orders WHERE x = ${h.pick(["'users'", S(), "'app_model'"])}`;
  },
  'DDL with a literal default': (h) =>
    `CREATE TABLE t2 (a text DEFAULT ${h.S()}); ALTER TABLE users ALTER COLUMN ssn SET DEFAULT ${h.S()}`,
  'refused comparisons': (h) => {
    const { S } = h;
    return h.pick([`SELECT * FROM users WHERE ssn = ${S()}`, `SELECT * FROM users WHERE email LIKE ${S()}`, `SELECT * FROM users WHERE email < ${S()}`]);
  },
  'typmods and typed literals': (h) => {
    const { S, N } = h;
    return `SELECT ${S()}::varchar(${N()}), date ${S()}, interval ${S()} FROM users WHERE email = ${S()}`;
  },
  'quoted identifiers': (h) => `INSERT INTO "Mixed Case" ("Secret Col", id) VALUES (${h.S()}, ${h.N()})`,
  'empty strings': (h) => `UPDATE users SET notes = ${h.pick(["''", h.S()])} WHERE email = ${h.pick(["''", h.S()])}`,
  'comments between values': (h) => {
    const { S, W } = h;
    return `/* ${h.pick(["'", 'x', '$$'])} */ SELECT * FROM users WHERE email = ${S()}${W()}AND name = ${S()} -- it's ${S()}`;
  },
  'join, LIMIT and OFFSET': (h) => {
    const { S, N } = h;
    return `SELECT * FROM users u JOIN archive a ON a.email = u.email WHERE u.email IN (${S()}) LIMIT ${N()} OFFSET ${N()}`;
  },
  'negative numbers, FETCH FIRST': (h) => {
    const { S, N } = h;
    return `SELECT * FROM users WHERE id = -${N()} AND email = ${S()} FETCH FIRST ${N()} ROWS ONLY`;
  },
  'EXPLAIN ANALYZE': (h) => `EXPLAIN ANALYZE INSERT INTO users (ssn) VALUES (${h.S()})`,
  'unicode and backslashes': (h) => `INSERT INTO users (ssn, name) VALUES (${h.S('escape')}, 'é✓😀 ${h.pick([1, 2])}\\')`,
};

const NEVER_REUSED = new Set(['DO blocks', 'refused comparisons']);

describe('plans reused by shape equal a full analysis', () => {
  for (const [name, family] of Object.entries(FAMILIES)) {
    test(name, () => {
      const seed = [...name].reduce((x, c) => (x * 31 + c.charCodeAt(0)) >>> 0, 7);
      const values = rng(seed);
      const cached = makeAnalyzer();
      let rebased = 0;
      for (let i = 0; i < 240; i++) {
        const sql = family(holes(rng(seed + Math.floor(i / 6)), values));
        const fresh = makeAnalyzer(CATALOG, { cacheSize: 0, shapeCacheSize: 0 }).analyze(sql);
        const before = cached.stats.shapeHits;
        const plan = cached.analyze(i % 2 === 0 ? sql : Buffer.from(sql, 'utf8'));
        if (cached.stats.shapeHits > before) rebased++;
        if (!sameValue(plan, fresh)) expect(show(plan), sql).toBe(show(fresh));
      }
      // Refusals are not reused; everything else is, once its shape recurs.
      if (!NEVER_REUSED.has(name)) expect(rebased, name).toBeGreaterThan(40);
    });
  }
});

describe('what may change a plan is never masked', () => {
  test('values the analysis reads are fixed; unread ones are free', () => {
    const a = makeAnalyzer();
    a.analyze('SELECT id, ssn FROM users WHERE email = $1 ORDER BY 1 LIMIT 5');
    a.analyze('SELECT id, ssn FROM users WHERE email = $1 ORDER BY 1 LIMIT 6'); // a recurring shape: its template is built
    expect(a.stats.shapeHits).toBe(0);
    expect(a.analyze('SELECT id, ssn FROM users WHERE email = $1 ORDER BY 1 LIMIT 7').kind).toBe('plan');
    expect(a.stats.shapeHits).toBe(1); // LIMIT is free
    expect(a.analyze('SELECT id, ssn FROM users WHERE email = $1 ORDER BY 2 LIMIT 6')).toMatchObject({ kind: 'reject', error: { reason: 'encrypted_expression' } });
    expect(a.stats.shapeHits).toBe(1); // the position is fixed
  });

  test("'' and a value have different plans", () => {
    const a = makeAnalyzer();
    expect(expectPlan(a.analyze("INSERT INTO users (ssn) VALUES ('x')")).literals).toHaveLength(1);
    expect(expectPlan(a.analyze("INSERT INTO users (ssn) VALUES ('')")).literals).toHaveLength(0);
    expect(a.stats.shapeHits).toBe(0);
  });

  test('a catalog change is re-checked on a shape hit', () => {
    const catalog: Record<string, string[] | undefined> = { ...CATALOG };
    const a = makeAnalyzer(catalog);
    const cols = (sql: string) => expectPlan(a.analyze(sql)).literals.map((l) => `${l.target.column}=${l.value}`);
    expect(cols("INSERT INTO users VALUES (1, 'n', 's', 'e')")).toEqual(['ssn=s', 'email=e']);
    expect(cols("INSERT INTO users VALUES (2, 'n2', 's2', 'e2')")).toEqual(['ssn=s2', 'email=e2']);
    expect(cols("INSERT INTO users VALUES (5, 'n5', 's5', 'e5')")).toEqual(['ssn=s5', 'email=e5']);
    expect(a.stats.shapeHits).toBe(1);
    catalog['public.users'] = ['id', 'ssn', 'name', 'email', 'notes'];
    expect(cols("INSERT INTO users VALUES (3, 'n3', 's3', 'e3')")).toEqual(['ssn=n3', 'email=e3']);
    expect(a.stats.shapeHits).toBe(1);
    delete catalog['public.users'];
    expect(a.analyze("INSERT INTO users VALUES (4, 'n4', 's4', 'e4')")).toMatchObject({ kind: 'reject', error: { reason: 'unknown_columns' } });
  });

  test('a failing catalog is a changed catalog, not an exception', () => {
    let fail = false;
    const a = new SqlAnalyzer({
      tables: TABLES,
      columnsOf: (s, t) => {
        if (fail) throw new Error('catalog down');
        return CATALOG[`${s}.${t}`];
      },
    });
    a.analyze("INSERT INTO users VALUES (1, 'n', 's', 'e')");
    fail = true;
    expect(a.analyze("INSERT INTO users VALUES (1, 'n', 's', 'e')")).toMatchObject({ kind: 'reject', error: { reason: 'internal' } });
    expect(a.analyze("INSERT INTO users VALUES (2, 'n', 's', 'e')")).toMatchObject({ kind: 'reject', error: { reason: 'internal' } });
  });

  test('refusals and syntax errors are not reused', () => {
    const a = makeAnalyzer();
    a.analyze("SELECT * FROM users WHERE ssn = 'a'");
    a.analyze("SELECT * FROM users WHERE ssn = 'b'");
    a.analyze("INSERT INTO users (ssn VALUES ('a')");
    a.analyze("INSERT INTO users (ssn VALUES ('b')");
    expect(a.stats.shapeHits).toBe(0);
    expect(a.cachedShapes).toBe(0);
  });

  test('a value the lexer cannot decode is parsed', () => {
    const a = makeAnalyzer();
    a.analyze("INSERT INTO users (ssn) VALUES (E'a')");
    a.analyze("INSERT INTO users (ssn) VALUES (E'b')");
    expect(a.cachedShapes).toBe(1);
    const p = expectPlan(a.analyze("INSERT INTO users (ssn) VALUES (E'\\u00e9')"));
    expect(a.stats.shapeHits).toBe(0);
    expect(p.literals[0]!.value).toBe('é');
  });

  test('a shape seen once has no template', () => {
    const a = makeAnalyzer();
    a.analyze("INSERT INTO users (ssn) VALUES ('x')");
    expect(a.cachedShapes).toBe(0);
    a.analyze("INSERT INTO users (ssn) VALUES ('y')");
    expect(a.cachedShapes).toBe(1);
    expect(a.stats.shapeHits).toBe(0);
    a.analyze("INSERT INTO users (ssn) VALUES ('z')");
    expect(a.stats.shapeHits).toBe(1);
  });

  test('shapes are bounded and cleared with the cache', () => {
    const a = makeAnalyzer(CATALOG, { shapeCacheSize: 2 });
    for (const t of ['ssn', 'name', 'notes']) for (const v of ['x', 'y']) a.analyze(`INSERT INTO users (${t}) VALUES ('${v}')`);
    expect(a.cachedShapes).toBe(2);
    a.clearCache();
    expect(a.cachedShapes).toBe(0);
  });
});
