import { beforeAll, describe, expect, test } from 'vitest';
import { initSql } from '../../src/sql/index.js';
import { expectPlan, expectReject, makeAnalyzer, sites, slice } from './fixtures.js';

beforeAll(() => initSql());

const a = makeAnalyzer();
const planOf = (sql: string) => expectPlan(a.analyze(sql));
const sitesOf = (sql: string) => sites(sql, planOf(sql)).sort();

/** Refused, naming table.column, and the message never echoes the secret value. */
function refused(sql: string, reason: string, column: string, secret = 'TOPSECRET') {
  const e = expectReject(a.analyze(sql), reason);
  expect(e.code).toBe('0A000');
  expect(e.message).toContain(column);
  expect(JSON.stringify(e)).not.toContain(secret);
  return e;
}

describe('INSERT … VALUES', () => {
  test('column list, multi-row, params, literals, DEFAULT, NULL and untouched columns', () => {
    const sql = "INSERT INTO users (name, ssn, email) VALUES ('bob', '123-45', $1), ('al', $2, DEFAULT), ('x', NULL, $3) RETURNING id";
    expect(sitesOf(sql)).toEqual(["$1 -> users.email", "$2 -> users.ssn", "$3 -> users.email", "'123-45' (123-45) -> users.ssn"].sort());
    const p = planOf(sql);
    expect(p.params.get(1)!.target).toMatchObject({ schema: 'public', table: 'users', column: 'email' });
    expect(p.params.get(1)!.target.policy.searchable).toBe(true);
    expect(slice(sql, p.params.get(2)!.ranges[0]!)).toBe('$2');
    expect(p.tablesTouched).toEqual([{ schema: null, table: 'users', mapped: { schema: 'public', table: 'users' } }]);
    expect(p.isDdl).toBe(false);
  });

  test('without a column list the catalog gives the column order', () => {
    expect(sitesOf("INSERT INTO users VALUES (1, 'n', 's', $1, DEFAULT)")).toEqual(["$1 -> users.email", "'s' (s) -> users.ssn"].sort());
    // Fewer values than columns: the rest take defaults.
    expect(sitesOf("INSERT INTO users VALUES (1, 'n', 's')")).toEqual(["'s' (s) -> users.ssn"]);
  });

  test('without a column list and without catalog columns: refused (fail closed)', () => {
    const b = makeAnalyzer({});
    const e = expectReject(b.analyze("INSERT INTO users VALUES (1, 'n', 'TOPSECRET')"), 'unknown_columns');
    expect(e.message).toContain('public.users');
    expect(e.message).not.toContain('TOPSECRET');
    // With a column list the catalog is not needed.
    expect(b.analyze("INSERT INTO users (ssn) VALUES ('x')").kind).toBe('plan');
  });

  test('DEFAULT VALUES and omitted encrypted columns need nothing', () => {
    expect(sitesOf('INSERT INTO users DEFAULT VALUES')).toEqual([]);
    expect(sitesOf("INSERT INTO users (id, name) VALUES (1, 'plain')")).toEqual([]);
  });

  test("'' stays '' unless the column encrypts empty strings", () => {
    expect(sitesOf("INSERT INTO users (ssn, notes) VALUES ('', '')")).toEqual(["'' () -> users.notes"]);
  });

  test('casts around values', () => {
    expect(sitesOf("INSERT INTO users (ssn, email, notes) VALUES ($1::text, CAST($2 AS varchar), 'x'::text)")).toEqual(
      ["$1 -> users.ssn", "$2 -> users.email", "'x' (x) -> users.notes"].sort(),
    );
    expect(sitesOf("INSERT INTO users (ssn, email) VALUES (text 'a', $1::varchar COLLATE \"C\")")).toEqual(
      ["$1 -> users.email", "'a' (a) -> users.ssn"].sort(),
    );
    // A length limit applies to what is stored: the envelope, longer than the plaintext.
    // Postgres truncates on an explicit cast, so the secret would be lost: refused.
    refused("INSERT INTO users (ssn, email) VALUES (text 'a', $1::varchar(20) COLLATE \"C\")", 'unsupported_cast', 'public.users.email');
    refused("INSERT INTO users (ssn) VALUES ($1::char(30))", 'unsupported_cast', 'public.users.ssn');
    refused('INSERT INTO users (ssn) VALUES ($1::int)', 'unsupported_cast', 'public.users.ssn');
    refused("INSERT INTO users (ssn) VALUES ('TOPSECRET'::bytea)", 'unsupported_cast', 'public.users.ssn');
    refused("INSERT INTO users (ssn) VALUES ('TOPSECRET'::\"char\")", 'unsupported_cast', 'public.users.ssn');
  });

  test('non-string constants are refused', () => {
    refused('INSERT INTO users (ssn) VALUES (123456789)', 'non_string_constant', 'public.users.ssn', '123456789');
    refused('INSERT INTO users (ssn) VALUES (1.5)', 'non_string_constant', 'public.users.ssn', '1.5');
    refused('INSERT INTO users (ssn) VALUES (true)', 'non_string_constant', 'public.users.ssn');
    refused("INSERT INTO users (ssn) VALUES (B'1010')", 'non_string_constant', 'public.users.ssn');
  });

  test('values the proxy cannot see are refused', () => {
    refused("INSERT INTO users (ssn) VALUES (upper('TOPSECRET'))", 'unencryptable_value', 'public.users.ssn');
    refused("INSERT INTO users (ssn) VALUES ('TOPSECRET' || 'x')", 'unencryptable_value', 'public.users.ssn');
    refused("INSERT INTO users (ssn) VALUES ($1 || 'TOPSECRET')", 'unencryptable_value', 'public.users.ssn');
    refused('INSERT INTO users (ssn) VALUES (ROW($1))', 'unencryptable_value', 'public.users.ssn');
    refused('INSERT INTO users (ssn) VALUES (current_user)', 'unencryptable_value', 'public.users.ssn');
    refused("INSERT INTO users (ssn[1]) VALUES ('TOPSECRET')", 'unencryptable_value', 'public.users.ssn');
  });

  test('CASE and COALESCE branches are followed', () => {
    expect(sitesOf("INSERT INTO users (ssn) VALUES (CASE WHEN $1 THEN $2 ELSE 'x' END)")).toEqual(["$2 -> users.ssn", "'x' (x) -> users.ssn"].sort());
    expect(sitesOf("INSERT INTO users (ssn) VALUES (COALESCE($1, ''))")).toEqual(['$1 -> users.ssn']);
  });

  test('a parameter written to an encrypted column and used elsewhere is refused', () => {
    refused('INSERT INTO users (ssn, name) VALUES ($1, $1)', 'param_conflict', 'public.users.ssn');
    refused('INSERT INTO users (ssn) SELECT $1 WHERE length($1) > 3', 'param_conflict', 'public.users.ssn');
    refused('INSERT INTO users (ssn, email) VALUES ($1, $1)', 'param_conflict', 'users');
    // Same policy on both columns: one ciphertext fits both.
    expect(sitesOf('INSERT INTO users (ssn) VALUES ($1) ON CONFLICT (id) DO UPDATE SET ssn = $1')).toEqual(['$1 -> users.ssn']);
    // A parameter both inserted and compared on the same searchable column is fine (issue 6 rewrites the comparison).
    expect(sitesOf('INSERT INTO users (email) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM users WHERE email = $1)')).toEqual(['$1 -> users.email']);
  });
});

describe('INSERT … SELECT', () => {
  test('parameters and literals, set operations', () => {
    expect(sitesOf("INSERT INTO users (ssn, email) SELECT $1, 'e'")).toEqual(["$1 -> users.ssn", "'e' (e) -> users.email"].sort());
    expect(sitesOf("INSERT INTO users (ssn) SELECT $1 UNION ALL SELECT 'x' FROM generate_series(1, 2)")).toEqual(["$1 -> users.ssn", "'x' (x) -> users.ssn"].sort());
    expect(sitesOf("INSERT INTO users (ssn) SELECT v FROM (VALUES ($1), ('y')) AS t(v)")).toEqual(["$1 -> users.ssn", "'y' (y) -> users.ssn"].sort());
    expect(sitesOf("INSERT INTO users (ssn) VALUES ((SELECT 'x'))")).toEqual(["'x' (x) -> users.ssn"]);
  });

  test('copies from an encrypted column with the same policy are allowed', () => {
    expect(sitesOf('INSERT INTO archive (ssn, email) SELECT ssn, email FROM users WHERE id = 1')).toEqual([]);
    expect(sitesOf('INSERT INTO archive SELECT * FROM archive')).toEqual([]);
    expect(sitesOf('INSERT INTO app.secrets (secret) SELECT u.ssn FROM users u')).toEqual([]);
    expect(sitesOf('INSERT INTO users (ssn) VALUES ((SELECT ssn FROM archive LIMIT 1))')).toEqual([]);
    expect(sitesOf('INSERT INTO archive (ssn) SELECT x.ssn FROM (SELECT ssn FROM users) x')).toEqual([]);
    // Unqualified ssn: archive has it encrypted, so Postgres resolves it there or reports ambiguity.
    expect(sitesOf('INSERT INTO users (ssn) SELECT ssn FROM archive JOIN plain_table USING (id)')).toEqual([]);
  });

  test('copies from plain or differently encrypted columns are refused', () => {
    refused('INSERT INTO users (ssn) SELECT name FROM users', 'unencryptable_value', 'public.users.ssn');
    refused('INSERT INTO users (ssn) SELECT x FROM plain_table', 'unencryptable_value', 'public.users.ssn');
    refused('INSERT INTO users (ssn) SELECT ssn FROM plain_table', 'unencryptable_value', 'public.users.ssn');
    refused('INSERT INTO users (ssn) SELECT email FROM users', 'incompatible_copy', 'public.users.ssn');
    // NATURAL RIGHT JOIN: the merged ssn may be plain_table's value.
    refused('INSERT INTO archive (ssn) SELECT ssn FROM users NATURAL RIGHT JOIN plain_table', 'unencryptable_value', 'public.archive.ssn');
    expect(sitesOf('INSERT INTO archive (ssn) SELECT users.ssn FROM users NATURAL JOIN plain_table')).toEqual([]);
    refused('INSERT INTO users SELECT * FROM plain_table', 'unencryptable_value', 'public.users.ssn');
    refused('INSERT INTO users (ssn) SELECT upper(ssn) FROM users', 'unencryptable_value', 'public.users.ssn');
    refused("INSERT INTO users (ssn) SELECT secret FROM app.secrets WHERE doc IS NULL UNION SELECT 'x'||'y'", 'unencryptable_value', 'public.users.ssn');
  });

  test('unnest bulk inserts (Django 5.2) encrypt array elements', () => {
    const sql = 'INSERT INTO "app_model" ("secret", "token", "title") SELECT * FROM UNNEST(($1)::text[], ($2)::varchar[], ($3)::text[])';
    const p = planOf(sql);
    expect(sites(sql, p).sort()).toEqual(['$1[] -> app_model.secret', '$2[] -> app_model.token']);
    expect(p.params.get(1)!.elements).toBe(true);
    // Django casts to the model field's varchar(n): the envelope would be truncated, so refused
    // (declare the field as a TextField, or drop max_length, for an encrypted column).
    refused('INSERT INTO "app_model" ("secret", "token") SELECT * FROM UNNEST(($1)::text[], ($2)::varchar(64)[])', 'unsupported_cast', 'public.app_model.token');
    expect(sitesOf("INSERT INTO app_model (secret) SELECT * FROM unnest(ARRAY['a', $1, NULL]::text[])")).toEqual(["$1 -> app_model.secret", "'a' (a) -> app_model.secret"].sort());
    expect(sitesOf('INSERT INTO app_model (secret) SELECT unnest($1::text[])')).toEqual(['$1[] -> app_model.secret']);
    expect(sitesOf('INSERT INTO app_model (secret, title) SELECT s, t FROM unnest($1::text[], $2::text[]) AS u(s, t)')).toEqual(['$1[] -> app_model.secret']);
    refused("INSERT INTO app_model (secret) SELECT * FROM unnest('{TOPSECRET}'::text[])", 'unencryptable_value', 'public.app_model.secret');
    refused('INSERT INTO app_model (secret) SELECT * FROM unnest($1::int[])', 'unsupported_cast', 'public.app_model.secret');
    refused('INSERT INTO app_model (secret) SELECT * FROM my_func($1)', 'unencryptable_value', 'public.app_model.secret');
  });
});

describe('UPDATE', () => {
  test('SET col = value, multi-column assignments', () => {
    expect(sitesOf("UPDATE users SET ssn = $1, notes = 'n', name = 'plain' WHERE id = $2")).toEqual(["$1 -> users.ssn", "'n' (n) -> users.notes"].sort());
    expect(sitesOf("UPDATE users SET (ssn, email) = ($1, 'e'), name = 'x'")).toEqual(["$1 -> users.ssn", "'e' (e) -> users.email"].sort());
    expect(sitesOf("UPDATE users SET (name, ssn) = ROW('plain', $1)")).toEqual(['$1 -> users.ssn']);
    expect(sitesOf('UPDATE users SET (ssn, email) = (SELECT ssn, email FROM archive WHERE archive.id = users.id)')).toEqual([]);
    expect(sitesOf("UPDATE users SET (ssn, email) = (SELECT 's', $1)")).toEqual(["$1 -> users.email", "'s' (s) -> users.ssn"].sort());
    expect(sitesOf('UPDATE users SET ssn = NULL, email = DEFAULT')).toEqual([]);
  });

  test('copies from other encrypted columns, FROM clause', () => {
    expect(sitesOf('UPDATE users u SET ssn = a.ssn FROM archive a WHERE a.id = u.id')).toEqual([]);
    expect(sitesOf('UPDATE users SET ssn = ssn')).toEqual([]);
    refused('UPDATE users u SET ssn = p.x FROM plain_table p WHERE p.id = u.id', 'unencryptable_value', 'public.users.ssn');
    refused('UPDATE users SET ssn = name', 'unencryptable_value', 'public.users.ssn');
  });

  test('expressions are refused', () => {
    refused('UPDATE users SET ssn = upper(ssn)', 'unencryptable_value', 'public.users.ssn');
    refused("UPDATE users SET ssn = ssn || 'TOPSECRET'", 'unencryptable_value', 'public.users.ssn');
    refused("UPDATE users SET (ssn, email) = ROW(lower('TOPSECRET'), $1)", 'unencryptable_value', 'public.users.ssn');
    refused("UPDATE users SET ssn = (SELECT x FROM plain_table)", 'unencryptable_value', 'public.users.ssn');
    refused("UPDATE app.secrets SET doc = jsonb_set(doc, '{pin}', $1)", 'unencryptable_value', 'app.secrets.doc');
  });

  test('Django bulk_update CASE WHEN', () => {
    const sql =
      'UPDATE "app_model" SET "secret" = (CASE WHEN ("app_model"."id" = 1) THEN \'a\' WHEN ("app_model"."id" = 2) THEN $1::text ELSE NULL END)::text WHERE "app_model"."id" IN (1, 2)';
    expect(sitesOf(sql)).toEqual(["$1 -> app_model.secret", "'a' (a) -> app_model.secret"].sort());
  });
});

describe('INSERT … ON CONFLICT', () => {
  test('DO UPDATE SET col = EXCLUDED.col | $n | literal', () => {
    const sql = "INSERT INTO app_model AS m (secret, token) VALUES ('s', $1) ON CONFLICT (token) DO UPDATE SET secret = EXCLUDED.secret, token = $2, title = 'plain' WHERE m.token = 't'";
    const p = planOf(sql);
    expect(sites(sql, p).sort()).toEqual(["$1 -> app_model.token", "$2 -> app_model.token", "'s' (s) -> app_model.secret"].sort());
    expect(p.predicates.map((x) => [x.kind, x.target.column, x.literals.map((l) => slice(sql, l))])).toEqual([['eq', 'token', ["'t'"]]]);
    expect(sitesOf("INSERT INTO users (ssn) VALUES ('a') ON CONFLICT (id) DO UPDATE SET ssn = 'b'")).toEqual(["'a' (a) -> users.ssn", "'b' (b) -> users.ssn"].sort());
    expect(sitesOf("INSERT INTO users (ssn) VALUES ('a') ON CONFLICT (id) DO UPDATE SET ssn = users.ssn")).toEqual(["'a' (a) -> users.ssn"]);
    expect(sitesOf("INSERT INTO users (ssn) VALUES ('a') ON CONFLICT DO NOTHING")).toEqual(["'a' (a) -> users.ssn"]);
  });

  test('EXCLUDED of a plain column into an encrypted one is refused', () => {
    refused("INSERT INTO users (name, ssn) VALUES ('TOPSECRET', 's') ON CONFLICT (id) DO UPDATE SET ssn = EXCLUDED.name", 'unencryptable_value', 'public.users.ssn');
    refused("INSERT INTO users (ssn) VALUES ('a') ON CONFLICT (id) DO UPDATE SET ssn = EXCLUDED.email", 'incompatible_copy', 'public.users.ssn');
  });
});

describe('MERGE', () => {
  test('VALUES source: each source column is followed to where it lands', () => {
    const sql =
      "MERGE INTO users u USING (VALUES ($1, $2, 'lit')) AS s(a, b, c) ON u.id = s.a WHEN MATCHED AND s.b IS NOT NULL THEN UPDATE SET ssn = s.b, name = s.c WHEN NOT MATCHED THEN INSERT (id, ssn, email) VALUES (s.a, s.b, s.c) WHEN NOT MATCHED BY SOURCE THEN DELETE";
    // s.c goes to name (plain) in one branch and email (encrypted) in the other: the literal is encrypted.
    expect(sitesOf(sql)).toEqual(["$2 -> users.ssn", "'lit' (lit) -> users.email"].sort());
  });

  test('table source and literal values', () => {
    expect(sitesOf('MERGE INTO archive t USING users s ON t.id = s.id WHEN MATCHED THEN UPDATE SET ssn = s.ssn WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.ssn, s.email)')).toEqual([]);
    expect(sitesOf("MERGE INTO users t USING plain_table s ON t.id = s.id WHEN NOT MATCHED THEN INSERT (id, ssn) VALUES (s.id, 'x')")).toEqual(["'x' (x) -> users.ssn"]);
    refused('MERGE INTO users t USING plain_table s ON t.id = s.id WHEN MATCHED THEN UPDATE SET ssn = s.ssn', 'unencryptable_value', 'public.users.ssn');
    refused('MERGE INTO users t USING plain_table s ON t.id = s.id WHEN NOT MATCHED THEN INSERT (id, ssn) VALUES (s.id, s.v)', 'unencryptable_value', 'public.users.ssn');
  });
});

describe('CTEs, EXPLAIN, multi-statement, RETURNING', () => {
  test('data-modifying CTEs anywhere', () => {
    expect(sitesOf('WITH x AS (INSERT INTO users (ssn) VALUES ($1) RETURNING id) SELECT * FROM x')).toEqual(['$1 -> users.ssn']);
    expect(sitesOf("WITH src AS (SELECT $1 AS v, 'w' AS w) INSERT INTO users (ssn, email) SELECT v, w FROM src")).toEqual(["$1 -> users.ssn", "'w' (w) -> users.email"].sort());
    expect(sitesOf("WITH moved AS (UPDATE users SET ssn = 'x' WHERE id = 1 RETURNING *) INSERT INTO archive (ssn, email) SELECT ssn, email FROM moved")).toEqual(["'x' (x) -> users.ssn"]);
    expect(sitesOf("SELECT * FROM (SELECT 1) s, LATERAL (SELECT 2) t WHERE EXISTS (WITH d AS (DELETE FROM users WHERE id = 1 RETURNING id) SELECT 1)")).toEqual([]);
    expect(sitesOf('WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) INSERT INTO users (ssn) SELECT $1 FROM r')).toEqual(['$1 -> users.ssn']);
    refused('WITH RECURSIVE r(n) AS (SELECT $1 UNION ALL SELECT n FROM r) INSERT INTO users (ssn) SELECT n FROM r', 'unencryptable_value', 'public.users.ssn');
  });

  test('EXPLAIN ANALYZE <write>', () => {
    expect(sitesOf("EXPLAIN (ANALYZE, BUFFERS) INSERT INTO users (ssn) VALUES ('x')")).toEqual(["'x' (x) -> users.ssn"]);
    expect(sitesOf('EXPLAIN ANALYZE UPDATE users SET ssn = $1')).toEqual(['$1 -> users.ssn']);
  });

  test('multi-statement: only the statement on an encrypted table gets sites, ranges are absolute', () => {
    const sql = "SELECT 'é'; INSERT INTO plain_table VALUES ('x'); INSERT INTO users (ssn) VALUES ('s1'); SELECT 'y'";
    const p = planOf(sql);
    expect(p.literals.map((l) => slice(sql, l))).toEqual(["'s1'"]);
    expect(p.statements.map((s) => [s.type, slice(sql, s.range)])).toEqual([
      ['SelectStmt', "SELECT 'é'"],
      ['InsertStmt', "INSERT INTO plain_table VALUES ('x')"],
      ['InsertStmt', "INSERT INTO users (ssn) VALUES ('s1')"],
      ['SelectStmt', "SELECT 'y'"],
    ]);
    expect(p.tablesTouched.map((t) => [t.table, !!t.mapped])).toEqual([['plain_table', false], ['users', true]]);
  });

  test('one refused statement refuses the whole message', () => {
    refused("INSERT INTO plain_table VALUES (1); UPDATE users SET ssn = upper('TOPSECRET')", 'unencryptable_value', 'public.users.ssn');
  });

  test('RETURNING is a read: anything goes', () => {
    expect(sitesOf('UPDATE users SET ssn = $1 WHERE id = $2 RETURNING ssn, upper(email), *')).toEqual(['$1 -> users.ssn']);
    expect(sitesOf('DELETE FROM users WHERE id = 1 RETURNING ssn')).toEqual([]);
  });
});

describe('names', () => {
  test('Django-style quoting, schema qualification and case folding', () => {
    expect(sitesOf('INSERT INTO "app_model" ("secret", "title") VALUES (\'s\', \'t\') RETURNING "app_model"."id"')).toEqual(["'s' (s) -> app_model.secret"]);
    expect(sitesOf("INSERT INTO USERS (SSN) VALUES ('x')")).toEqual(["'x' (x) -> users.ssn"]);
    expect(sitesOf("INSERT INTO public.users (ssn) VALUES ('x')")).toEqual(["'x' (x) -> users.ssn"]);
    expect(sitesOf("INSERT INTO \"public\".\"users\" (\"ssn\") VALUES ('x')")).toEqual(["'x' (x) -> users.ssn"]);
    expect(sitesOf("INSERT INTO \"Mixed Case\" (\"Secret Col\") VALUES ('x')")).toEqual(["'x' (x) -> Mixed Case.Secret Col"]);
    // Quoted names keep their case: these are other relations/columns.
    expect(a.analyze("INSERT INTO \"USERS\" (ssn) VALUES ('x')").kind).toBe('passthrough');
    expect(a.analyze("INSERT INTO \"mixed case\" (\"Secret Col\") VALUES ('x')").kind).toBe('passthrough');
    expect(sitesOf("INSERT INTO users (\"SSN\") VALUES ('x')")).toEqual([]);
  });

  test('unqualified names match a configured table in another schema (fail closed)', () => {
    expect(sitesOf("INSERT INTO secrets (secret) VALUES ('x')")).toEqual(["'x' (x) -> secrets.secret"]);
    expect(sitesOf("INSERT INTO app.secrets (secret) VALUES ('x')")).toEqual(["'x' (x) -> secrets.secret"]);
    expect(a.analyze("INSERT INTO other.secrets (secret) VALUES ('x')").kind).toBe('passthrough');
    expect(a.analyze("INSERT INTO other.users (ssn) VALUES ('x')").kind).toBe('passthrough');
  });

  test('a name configured in several non-public schemas is ambiguous when unqualified', () => {
    const b = new (a.constructor as typeof import('../../src/sql/index.js').SqlAnalyzer)({
      tables: [
        { schema: 's1', table: 't', columns: [{ column: 'c', searchable: false, onDecryptError: 'error', encryptEmpty: false }] },
        { schema: 's2', table: 't', columns: [{ column: 'c', searchable: false, onDecryptError: 'error', encryptEmpty: false }] },
      ],
      columnsOf: () => undefined,
    });
    expect(expectReject(b.analyze("INSERT INTO t (c) VALUES ('x')"), 'ambiguous_table').message).toContain('"t"');
    expect(b.analyze("INSERT INTO s2.t (c) VALUES ('x')").kind).toBe('plan');
  });
});

describe('server-side code', () => {
  test('DO blocks, functions, procedures and rules that mention encrypted tables are refused', () => {
    const e = expectReject(a.analyze("DO $$ BEGIN INSERT INTO users (ssn) VALUES ('TOPSECRET'); END $$"), 'server_side_code');
    expect(e.message).toContain('public.users');
    expect(e.message).not.toContain('TOPSECRET');
    expectReject(a.analyze("CREATE FUNCTION f(x text) RETURNS void LANGUAGE sql AS 'INSERT INTO users (ssn) VALUES (x)'"), 'server_side_code');
    expectReject(a.analyze('CREATE PROCEDURE p(x text) LANGUAGE sql BEGIN ATOMIC INSERT INTO users (ssn) VALUES (x); END'), 'server_side_code');
    expectReject(a.analyze('CREATE RULE r AS ON INSERT TO plain_table DO ALSO INSERT INTO users (ssn) VALUES (NEW.x)'), 'server_side_code');
    // Code that does not mention them is fine.
    expect(a.analyze("DO $$ BEGIN PERFORM 1; END $$; SELECT id FROM users").kind).toBe('plan');
    expect(a.analyze('CREATE RULE r AS ON INSERT TO users DO ALSO NOTIFY users_changed').kind).toBe('plan');
  });
});

describe('DDL that writes values', () => {
  test('CREATE TABLE AS / SELECT INTO a configured table', () => {
    expect(sitesOf("CREATE TABLE users AS SELECT 1 AS id, 'n' AS name, 'x' AS ssn")).toEqual(["'x' (x) -> users.ssn"]);
    expect(sitesOf("CREATE TABLE archive (id, ssn) AS SELECT id, ssn FROM users")).toEqual([]);
    expect(sitesOf("SELECT $1::text AS ssn INTO users")).toEqual(['$1 -> users.ssn']);
    expect(sitesOf("CREATE TABLE users AS SELECT 'x' AS ssn WITH NO DATA")).toEqual([]);
    refused("CREATE TABLE users AS SELECT upper('TOPSECRET') AS ssn", 'unencryptable_value', 'public.users.ssn');
    refused('CREATE TABLE archive (id, ssn) AS SELECT id, name FROM users', 'unencryptable_value', 'public.archive.ssn');
    refused("CREATE TABLE users AS EXECUTE p('TOPSECRET')", 'prepared_statement', 'public.users');
    expect(expectPlan(a.analyze('CREATE TABLE users AS SELECT 1 AS id')).isDdl).toBe(true);
  });

  test('literal defaults are encrypted; generated and USING expressions are refused', () => {
    expect(sitesOf("CREATE TABLE users (id int, ssn text DEFAULT 'x', email text DEFAULT '', name text DEFAULT 'plain')")).toEqual(["'x' (x) -> users.ssn"]);
    expect(sitesOf("ALTER TABLE users ADD COLUMN ssn text DEFAULT 'x', ALTER COLUMN email SET DEFAULT 'y'")).toEqual(["'x' (x) -> users.ssn", "'y' (y) -> users.email"].sort());
    expect(sitesOf('ALTER TABLE users ALTER COLUMN ssn SET DEFAULT NULL, ALTER COLUMN email SET DEFAULT gen_random_uuid()::text')).toEqual([]);
    expect(sitesOf('ALTER TABLE users ALTER COLUMN ssn TYPE varchar(200) USING ssn::varchar')).toEqual([]);
    refused('ALTER TABLE users ALTER COLUMN ssn TYPE text USING upper(ssn)', 'unencryptable_value', 'public.users.ssn');
    refused('ALTER TABLE users ALTER COLUMN ssn TYPE int USING ssn::int', 'unsupported_cast', 'public.users.ssn');
    refused('ALTER TABLE users ADD COLUMN ssn text GENERATED ALWAYS AS (name) STORED', 'unencryptable_value', 'public.users.ssn');
    refused('ALTER TABLE users ALTER COLUMN ssn SET EXPRESSION AS (upper(name))', 'unencryptable_value', 'public.users.ssn');
    expect(a.analyze("ALTER TABLE orders ADD COLUMN ssn text DEFAULT 'x'")).toEqual({ kind: 'passthrough', isDdl: true });
  });
});
