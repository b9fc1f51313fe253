// Row comparisons on searchable columns, in the SQL analysis: a searchable
// column compared with a value inside a row (`(tok, x) = ($1, 1)`, `(tok, x)
// IN ((…), (…))`) is refused with 0A000 naming the column, whatever the
// protocol (each value would need its candidate list, which a row cannot hold);
// rows that compare nothing to encrypt (NULL, '', two columns of one key) keep
// working, and a row compared with a subquery is checked member by member.
import { beforeAll, describe, expect, it } from 'vitest';
import type { ColumnPolicy, TablePolicy } from '../../src/config/types.js';
import { SqlAnalyzer } from '../../src/sql/analyzer.js';
import { initSql } from '../../src/sql/index.js';

const col = (column: string, extra: Partial<ColumnPolicy> = {}): ColumnPolicy => ({ column, searchable: false, onDecryptError: 'error', encryptEmpty: false, ...extra });
const tables: TablePolicy[] = [
  { schema: 'public', table: 't', columns: [col('tok', { searchable: true, keyGroup: 'g' }), col('tok2', { searchable: true }), col('secret')] },
  { schema: 'public', table: 'u', columns: [col('tok', { searchable: true, keyGroup: 'g' }), col('secret')] },
];
const catalog: Record<string, string[]> = { 'public.t': ['id', 'name', 'other', 'tok', 'tok2', 'secret'], 'public.u': ['id', 'other', 'tok', 'secret'] };
let a: SqlAnalyzer;
beforeAll(async () => {
  await initSql();
  a = new SqlAnalyzer({ tables, columnsOf: (s, t) => catalog[`${s}.${t}`] });
});

function refused(sql: string, reason: string, column: string) {
  const p = a.analyze(sql);
  if (p.kind !== 'reject') throw new Error(`expected a refusal of ${sql}, got ${p.kind}`);
  expect(p.error.code).toBe('0A000');
  expect(p.error.reason).toBe(reason);
  expect(p.error.message).toContain(column);
  expect(p.error.message).not.toContain('TOPSECRET');
  expect(p.error.position).toBeGreaterThan(0);
  return p.error;
}

function allowed(sql: string) {
  const p = a.analyze(sql);
  if (p.kind !== 'plan') throw new Error(`expected a plan for ${sql}, got ${JSON.stringify(p)}`);
  return p;
}

describe('row comparisons with a searchable column', () => {
  it.each([
    `SELECT name FROM t WHERE (tok, other) = ('TOPSECRET', 1)`,
    `SELECT name FROM t WHERE (other, tok) = (1, 'TOPSECRET')`,
    `SELECT name FROM t WHERE ROW(tok, other) = ROW('TOPSECRET', 1)`,
    `SELECT name FROM t WHERE (tok, other) <> ('TOPSECRET', 1)`,
    `SELECT name FROM t WHERE (tok, other) IS NOT DISTINCT FROM ('TOPSECRET', 1)`,
    `SELECT name FROM t WHERE (tok, other) IS DISTINCT FROM ('TOPSECRET', 1)`,
    `SELECT name FROM t WHERE (tok, other) IN (('TOPSECRET', 1), ('y', 2))`,
    `SELECT name FROM t WHERE (tok, other) NOT IN (('TOPSECRET', 1))`,
    `SELECT name FROM t WHERE (tok, other) = ($1, $2)`,
    `SELECT name FROM t WHERE (other, tok) IN (($1, $2), ($3, $4))`,
    `SELECT name FROM t WHERE (tok::text, other) = ($1::text, 1)`,
    `SELECT (tok, other) = ('TOPSECRET', 1) AS m FROM t`,
    `UPDATE t SET name = 'n' WHERE (tok, other) = ('TOPSECRET', 1)`,
    `DELETE FROM t WHERE (tok, other) = ($1, 1)`,
  ])('refused: %s', (sql) => {
    const e = refused(sql, 'unsupported_operator', 'public.t.tok');
    expect(e.message).toMatch(/row comparison/);
    expect(e.hint).toMatch(/tok = \$1/);
  });

  it('two searchable members: refused (the first one used to be dropped, leaving its value unencrypted)', () => {
    refused(`SELECT name FROM t WHERE (tok, tok2) = ('TOPSECRET', 'p')`, 'unsupported_operator', 'public.t.tok');
    refused(`SELECT name FROM t WHERE (tok2, tok) = ($1, $2)`, 'unsupported_operator', 'public.t.tok2');
  });

  it('other row forms with an encrypted member stay refused as expressions', () => {
    refused(`SELECT name FROM t WHERE (tok, other) = ANY(ARRAY[('TOPSECRET', 1)])`, 'encrypted_expression', 'public.t.tok');
    refused(`SELECT name FROM t WHERE (tok, other) < ('TOPSECRET', 1)`, 'encrypted_expression', 'public.t.tok');
    refused(`SELECT name FROM t WHERE (tok, other) IN (('TOPSECRET', 1), ('y', 2, 3))`, 'encrypted_expression', 'public.t.tok');
  });

  it('a non-searchable member compared with a value is refused as before', () => {
    refused(`SELECT name FROM t WHERE (secret, other) = ('TOPSECRET', 1)`, 'not_searchable', 'public.t.secret');
  });

  it('rows that compare nothing to encrypt keep working', () => {
    expect(allowed(`SELECT name FROM t WHERE (tok, other) = (NULL, 1)`).predicates).toEqual([]);
    expect(allowed(`SELECT name FROM t WHERE (tok, other) = ('', 1)`).predicates).toEqual([]);
    expect(allowed(`SELECT name FROM t WHERE (name, other) = ('n', 1)`).predicates).toEqual([]);
    // Two columns of one key group compare equal strings.
    expect(allowed(`SELECT 1 FROM t JOIN u ON (t.tok, t.other) = (u.tok, u.other)`).predicates).toEqual([]);
    expect(allowed(`SELECT 1 FROM t JOIN u ON (t.tok, t.other) IN ((u.tok, u.other))`).predicates).toEqual([]);
  });

  it('columns of different keys in a row are refused', () => {
    const e = refused(`SELECT 1 FROM t JOIN u ON (t.tok2, t.other) = (u.tok, u.other)`, 'unsupported_operator', 'public.t.tok2');
    expect(e.message).toMatch(/different keys/);
    expect(e.hint).toMatch(/key_group/);
  });

  it('the plain forms keep one site per comparison', () => {
    const p = allowed(`SELECT name FROM t WHERE tok = 'x' AND tok2 = $1 AND other = 1`);
    expect(p.predicates.map((s) => s.target.column).sort()).toEqual(['tok', 'tok2']);
  });
});

describe('row compared with a subquery, member by member', () => {
  it('same key in the same position: allowed', () => {
    expect(allowed(`SELECT 1 FROM t WHERE (tok, other) IN (SELECT tok, other FROM u)`).predicates).toEqual([]);
  });

  it('an encrypted subquery column against a plaintext member is refused (it could never match)', () => {
    refused(`SELECT 1 FROM t WHERE (other, name) IN (SELECT other, tok FROM u)`, 'encrypted_expression', 'public.u.tok');
    refused(`SELECT 1 FROM t WHERE (other, name) IN (SELECT other, secret FROM u)`, 'not_searchable', 'public.u.secret');
  });

  it('a searchable member against a plaintext subquery column is refused', () => {
    refused(`SELECT 1 FROM t WHERE (other, tok) IN (SELECT other, other::text FROM u)`, 'encrypted_expression', 'public.t.tok');
  });

  it('different keys in one position are refused', () => {
    const e = refused(`SELECT 1 FROM t WHERE (other, tok2) IN (SELECT other, tok FROM u)`, 'unsupported_operator', 'public.t.tok2');
    expect(e.message).toMatch(/different keys/);
    refused(`SELECT 1 FROM t WHERE tok2 IN (SELECT tok FROM u)`, 'unsupported_operator', 'public.t.tok2');
  });
});
