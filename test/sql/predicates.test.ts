import { beforeAll, describe, expect, test } from 'vitest';
import { initSql } from '../../src/sql/index.js';
import { expectPlan, expectReject, makeAnalyzer, slice } from './fixtures.js';

beforeAll(() => initSql());

const a = makeAnalyzer();

function preds(sql: string) {
  return expectPlan(a.analyze(sql)).predicates.map((p) => ({
    kind: p.kind,
    negated: p.negated,
    column: `${p.target.table}.${p.target.column}`,
    params: p.params.map((x) => `$${x.param}@${slice(sql, x)}`),
    literals: p.literals.map((l) => `${slice(sql, l)}=${l.value}`),
  }));
}

function refused(sql: string, reason: string, column: string, secret = 'TOPSECRET') {
  const e = expectReject(a.analyze(sql), reason);
  expect(e.code).toBe('0A000');
  expect(e.message).toContain(column);
  expect(JSON.stringify(e)).not.toContain(secret);
  expect(e.position).toBeGreaterThan(0);
  return e;
}

describe('non-searchable columns', () => {
  test('comparisons with a value can never match: refused', () => {
    refused("SELECT * FROM users WHERE ssn = 'TOPSECRET'", 'not_searchable', 'public.users.ssn');
    refused('SELECT * FROM users WHERE ssn = $1', 'not_searchable', 'public.users.ssn');
    refused("SELECT * FROM users WHERE ssn IN ('TOPSECRET', $1)", 'not_searchable', 'public.users.ssn');
    refused("SELECT * FROM users WHERE ssn <> 'TOPSECRET'", 'not_searchable', 'public.users.ssn');
    refused("SELECT * FROM users WHERE 'TOPSECRET' = ssn", 'not_searchable', 'public.users.ssn');
    refused("DELETE FROM users WHERE ssn = 'TOPSECRET'", 'not_searchable', 'public.users.ssn');
    refused("UPDATE users SET name = 'x' WHERE users.ssn = $1", 'not_searchable', 'public.users.ssn');
    refused('SELECT * FROM users WHERE ssn = ANY($1)', 'not_searchable', 'public.users.ssn');
    refused("SELECT * FROM users WHERE ssn IS DISTINCT FROM 'TOPSECRET'", 'not_searchable', 'public.users.ssn');
    refused("SELECT * FROM users WHERE notes = ''", 'not_searchable', 'public.users.notes'); // encryptEmpty: '' is a value
    refused("SELECT * FROM app.secrets s WHERE s.secret = 'TOPSECRET'", 'not_searchable', 'app.secrets.secret');
  });

  test('ordering and pattern operators are refused', () => {
    refused("SELECT * FROM users WHERE ssn LIKE 'TOPSECRET%'", 'unsupported_operator', 'public.users.ssn');
    refused("SELECT * FROM users WHERE ssn < 'TOPSECRET'", 'unsupported_operator', 'public.users.ssn');
    refused("SELECT * FROM users WHERE ssn BETWEEN 'a' AND 'TOPSECRET'", 'unsupported_operator', 'public.users.ssn');
    refused("SELECT * FROM users WHERE ssn ~ 'TOPSECRET'", 'unsupported_operator', 'public.users.ssn');
    refused("SELECT * FROM users WHERE ssn NOT ILIKE 'TOPSECRET'", 'unsupported_operator', 'public.users.ssn');
  });

  test('IS NULL, IS NOT NULL, = NULL and = \'\' stay allowed', () => {
    expect(preds("SELECT * FROM users WHERE ssn IS NULL OR ssn IS NOT NULL OR ssn = '' OR ssn <> '' OR ssn = NULL OR ssn IN ('', NULL)")).toEqual([]);
    expect(preds('SELECT * FROM users WHERE ssn IS NOT DISTINCT FROM NULL')).toEqual([]);
  });

  test('expressions over encrypted columns in conditions are refused', () => {
    refused("SELECT * FROM users WHERE lower(ssn) = 'TOPSECRET'", 'encrypted_expression', 'public.users.ssn');
    refused('SELECT * FROM users WHERE length(ssn) > 3', 'encrypted_expression', 'public.users.ssn');
    refused("SELECT * FROM users WHERE (ssn || 'x') = 'TOPSECRETx'", 'encrypted_expression', 'public.users.ssn');
    refused("SELECT * FROM users u JOIN orders o ON o.k = upper(u.ssn)", 'encrypted_expression', 'public.users.ssn');
    refused("SELECT count(*) FILTER (WHERE starts_with(ssn, 'TOPSECRET')) FROM users", 'encrypted_expression', 'public.users.ssn');
    refused("SELECT CASE WHEN ssn = 'TOPSECRET' THEN 1 END FROM users", 'not_searchable', 'public.users.ssn');
    refused("SELECT CASE ssn WHEN 'TOPSECRET' THEN 1 END FROM users", 'encrypted_expression', 'public.users.ssn');
    refused("SELECT * FROM users WHERE ssn = $1::int", 'unsupported_cast', 'public.users.ssn');
  });

  test('reads of encrypted columns are fine (decryption happens on the way out)', () => {
    expect(preds('SELECT ssn, upper(email), count(ssn) FROM users WHERE id = $1 GROUP BY id HAVING count(ssn) > 0')).toEqual([]);
  });

  test('subqueries and correlated references', () => {
    refused("SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM users u WHERE u.ssn = 'TOPSECRET' AND u.id = o.uid)", 'not_searchable', 'public.users.ssn');
    refused("SELECT * FROM (SELECT ssn AS s FROM users) x WHERE x.s = 'TOPSECRET'", 'not_searchable', 'public.users.ssn');
    refused("WITH c AS (SELECT ssn FROM users) SELECT * FROM c WHERE ssn = 'TOPSECRET'", 'not_searchable', 'public.users.ssn');
    refused('SELECT * FROM users WHERE ssn IN (SELECT ssn FROM archive)', 'not_searchable', 'public.users.ssn');
    refused('SELECT * FROM orders WHERE k IN (SELECT ssn FROM users)', 'not_searchable', 'public.users.ssn');
    refused('SELECT * FROM orders WHERE k IN (SELECT email FROM users)', 'encrypted_expression', 'public.users.email');
  });

  test('joins on non-searchable columns never match', () => {
    refused('SELECT * FROM users u JOIN archive a ON u.ssn = a.ssn', 'not_searchable', '.ssn');
    expectReject(a.analyze('SELECT * FROM users JOIN archive USING (ssn)'), 'not_searchable');
    expectReject(a.analyze('SELECT * FROM users JOIN orders USING (ssn)'), 'encrypted_expression');
  });
});

describe('searchable columns', () => {
  test('=, <>, IN, = ANY record predicate sites with params and literal ranges', () => {
    expect(preds("SELECT * FROM users WHERE email = 'a@x' AND email <> $1 AND email IN ($2, 'b') AND email NOT IN ('c')")).toEqual([
      { kind: 'eq', negated: false, column: 'users.email', params: [], literals: ["'a@x'=a@x"] },
      { kind: 'neq', negated: false, column: 'users.email', params: ['$1@$1'], literals: [] },
      { kind: 'in', negated: false, column: 'users.email', params: ['$2@$2'], literals: ["'b'=b"] },
      { kind: 'in', negated: true, column: 'users.email', params: [], literals: ["'c'=c"] },
    ]);
    expect(preds("SELECT * FROM users WHERE email = ANY($1::text[]) OR email <> ALL(ARRAY['x', $2])")).toEqual([
      { kind: 'any', negated: false, column: 'users.email', params: ['$1@$1'], literals: [] },
      { kind: 'any', negated: true, column: 'users.email', params: ['$2@$2'], literals: ["'x'=x"] },
    ]);
    expect(preds("SELECT * FROM users WHERE $1 = email OR email IS NOT DISTINCT FROM E'q\\n'")).toEqual([
      { kind: 'eq', negated: false, column: 'users.email', params: ['$1@$1'], literals: [] },
      { kind: 'eq', negated: false, column: 'users.email', params: [], literals: ["E'q\\n'=q\n"] },
    ]);
  });

  test('Django-style qualified, quoted, cast comparisons', () => {
    expect(preds('SELECT "app_model"."id" FROM "app_model" WHERE "app_model"."token" = \'abc\'::text LIMIT 21')).toEqual([
      { kind: 'eq', negated: false, column: 'app_model.token', params: [], literals: ["'abc'=abc"] },
    ]);
    // A row comparison cannot hold a candidate list: refused (test/searchable/searchable-rows.test.ts).
    refused('SELECT * FROM users WHERE (email, id) = ($1, 2)', 'unsupported_operator', 'public.users.email');
  });

  test('in UPDATE/DELETE conditions, ON CONFLICT WHERE and subqueries', () => {
    expect(preds("UPDATE users SET ssn = $1 WHERE email = $2").map((p) => p.params)).toEqual([['$2@$2']]);
    expect(preds("DELETE FROM users WHERE id IN (SELECT id FROM users WHERE email = 'z')").map((p) => p.literals)).toEqual([["'z'=z"]]);
  });

  test('LIKE, <, >, ORDER BY and expressions on searchable columns are refused', () => {
    refused("SELECT * FROM users WHERE email LIKE '%TOPSECRET'", 'unsupported_operator', 'public.users.email');
    refused("SELECT * FROM users WHERE email > 'TOPSECRET'", 'unsupported_operator', 'public.users.email');
    refused("SELECT * FROM users WHERE email = upper('TOPSECRET')", 'encrypted_expression', 'public.users.email');
    refused('SELECT * FROM users u JOIN orders o ON u.email = o.k', 'encrypted_expression', 'public.users.email');
    refused("SELECT * FROM users WHERE NULLIF(email, 'TOPSECRET') IS NULL", 'unsupported_operator', 'public.users.email');
  });

  test('equality joins between searchable columns that share a key (key_group) are allowed', () => {
    expect(preds('SELECT * FROM users u JOIN archive a ON u.email = a.email')).toEqual([]);
    expect(preds('SELECT * FROM users JOIN archive USING (email)')).toEqual([]);
    expect(preds('SELECT * FROM users WHERE email IN (SELECT email FROM archive)')).toEqual([]);
  });

  test('joins between searchable columns with different keys are refused: equal plaintexts are different strings', () => {
    expect(a.analyze('SELECT * FROM users u JOIN app_model m ON u.email = m.token').kind).toBe('reject');
  });
});

describe('ORDER BY, GROUP BY, windows', () => {
  test('ordering or grouping by an encrypted column is refused', () => {
    refused('SELECT ssn FROM users ORDER BY ssn', 'encrypted_expression', 'public.users.ssn');
    refused('SELECT id, email FROM users ORDER BY 2 DESC', 'encrypted_expression', 'public.users.email');
    refused('SELECT email AS e FROM users ORDER BY e', 'encrypted_expression', 'public.users.email');
    refused('SELECT * FROM users ORDER BY lower(ssn)', 'encrypted_expression', 'public.users.ssn');
    refused('SELECT ssn, count(*) FROM users GROUP BY ssn', 'encrypted_expression', 'public.users.ssn');
    refused('SELECT email, count(*) FROM users GROUP BY 1', 'encrypted_expression', 'public.users.email');
    refused('SELECT row_number() OVER (PARTITION BY ssn) FROM users', 'encrypted_expression', 'public.users.ssn');
    refused('SELECT row_number() OVER (ORDER BY email) FROM users', 'encrypted_expression', 'public.users.email');
    refused("SELECT string_agg(id::text, ',' ORDER BY ssn) FROM users", 'encrypted_expression', 'public.users.ssn');
    refused('SELECT ssn FROM users UNION SELECT ssn FROM archive ORDER BY ssn', 'encrypted_expression', 'public.users.ssn');
  });

  test('ordering by other columns is fine', () => {
    expect(preds('SELECT ssn, name FROM users ORDER BY id, 2 DESC')).toEqual([]);
    expect(preds('SELECT id, count(*) FROM users GROUP BY id, name')).toEqual([]);
  });
});

describe('JSON paths', () => {
  test('conditions on unencrypted paths of a jsonb column are fine; on encrypted paths refused', () => {
    expect(preds("SELECT * FROM app.secrets WHERE doc->>'label' = 'x' AND doc->'card'->>'brand' = 'visa'")).toEqual([]);
    expect(preds("SELECT doc->'card'->>'number', doc #>> '{pin}' FROM app.secrets")).toEqual([]);
    refused("SELECT * FROM app.secrets WHERE doc->'card'->>'number' = 'TOPSECRET'", 'encrypted_expression', 'app.secrets.doc');
    refused("SELECT * FROM app.secrets WHERE doc->>'pin' = 'TOPSECRET'", 'encrypted_expression', 'app.secrets.doc');
    refused("SELECT * FROM app.secrets WHERE doc #>> '{card,number}' = 'TOPSECRET'", 'encrypted_expression', 'app.secrets.doc');
    refused("SELECT * FROM app.secrets WHERE doc->'card' = 'TOPSECRET'", 'encrypted_expression', 'app.secrets.doc');
    refused("SELECT * FROM app.secrets WHERE doc->>$1 = 'TOPSECRET'", 'encrypted_expression', 'app.secrets.doc');
    refused('SELECT * FROM app.secrets ORDER BY secret', 'encrypted_expression', 'app.secrets.secret');
  });
});
