// The statement rewrite for searchable comparisons, on the analyzer's real
// plans: exactly the comparison's bytes change (comments, casts, parentheses,
// multi-byte text elsewhere survive), parameters are added after the client's
// and reused only when safe, and what cannot be located is refused.
import { beforeAll, describe, expect, it } from 'vitest';
import type { ColumnPolicy, TablePolicy } from '../../src/config/types.js';
import { literalEdits, planParse } from '../../src/encryption/searchable-rewrite.js';
import { RewriteError, statementShape } from '../../src/encryption/searchable-sql.js';
import { keyNameOfTarget } from '../../src/encryption/searchable-session.js';
import { spliceLiterals } from '../../src/sql/lexical.js';
import { SqlAnalyzer } from '../../src/sql/analyzer.js';
import { initSql } from '../../src/sql/index.js';
import type { RewritePlan } from '../../src/sql/types.js';

const col = (column: string, extra: Partial<ColumnPolicy> = {}): ColumnPolicy => ({ column, searchable: true, onDecryptError: 'error', encryptEmpty: false, ...extra });
const tables: TablePolicy[] = [
  { schema: 'public', table: 'api_token', columns: [col('token_hash'), col('secret', { searchable: false })] },
  { schema: 'public', table: 'other', columns: [col('h')] },
];
let analyzer: SqlAnalyzer;
beforeAll(async () => {
  await initSql();
  analyzer = new SqlAnalyzer({ tables, columnsOf: () => undefined });
});

function plan(sql: string): { bytes: Buffer; plan: RewritePlan } {
  const bytes = Buffer.from(sql, 'utf8');
  const p = analyzer.analyze(bytes);
  if (p.kind !== 'plan') throw new Error(`expected a plan: ${JSON.stringify(p)}`);
  return { bytes, plan: p };
}

/** The Parse rewrite with 3 slots: the new text, the parameter count, and which parameters each value fills. */
function parse(sql: string, types: number[] = []) {
  const { bytes, plan: p } = plan(sql);
  const rw = planParse(bytes, p, statementShape(sql, p.predicates), types, 3, keyNameOfTarget);
  return { text: spliceLiterals(bytes, rw.edits).toString('utf8'), rw };
}

/** The simple-protocol rewrite with `n` candidates per literal (c1..cn). */
function literals(sql: string, n: number): string {
  const { bytes, plan: p } = plan(sql);
  const edits = literalEdits(bytes, p.predicates, (_, v) => Array.from({ length: n }, (_, i) => `'${v}#${i + 1}'`), () => statementShape(sql, p.predicates));
  return spliceLiterals(bytes, edits).toString('utf8');
}

describe('Parse rewrite (bind parameters)', () => {
  it.each([
    ['SELECT id FROM api_token WHERE token_hash = $1', 'SELECT id FROM api_token WHERE token_hash IN ($1, $2, $3)'],
    ['SELECT id FROM api_token WHERE token_hash <> $1', 'SELECT id FROM api_token WHERE token_hash NOT IN ($1, $2, $3)'],
    ['SELECT id FROM api_token WHERE token_hash != $1', 'SELECT id FROM api_token WHERE token_hash NOT IN ($1, $2, $3)'],
    ['SELECT id FROM api_token WHERE $1 = token_hash', 'SELECT id FROM api_token WHERE token_hash IN ($1, $2, $3)'],
    ['SELECT id FROM api_token WHERE token_hash = $1::text', 'SELECT id FROM api_token WHERE token_hash IN ($1::text, $2::text, $3::text)'],
    [
      'SELECT id FROM api_token t WHERE (t.token_hash) /* c */ = -- x\n CAST($1 AS text) AND id > 0',
      'SELECT id FROM api_token t WHERE (t.token_hash) /* c */ IN (CAST($1 AS text), CAST($2 AS text), CAST($3 AS text)) AND id > 0',
    ],
    [
      'SELECT id FROM api_token WHERE token_hash IS NOT DISTINCT FROM $1',
      'SELECT id FROM api_token WHERE (token_hash IS NOT DISTINCT FROM $1 OR token_hash IS NOT DISTINCT FROM $2 OR token_hash IS NOT DISTINCT FROM $3)',
    ],
    [
      'SELECT id FROM api_token WHERE token_hash IS DISTINCT FROM $1',
      'SELECT id FROM api_token WHERE (token_hash IS DISTINCT FROM $1 AND token_hash IS DISTINCT FROM $2 AND token_hash IS DISTINCT FROM $3)',
    ],
    ['SELECT id FROM api_token WHERE token_hash IN ($1, ($2))', 'SELECT id FROM api_token WHERE token_hash IN ($1, $3, $4, ($2), ($5), ($6))'],
    ['SELECT id FROM api_token WHERE token_hash = ANY(ARRAY[$1])', 'SELECT id FROM api_token WHERE token_hash = ANY(ARRAY[$1, $2, $3])'],
    ['SELECT id FROM api_token WHERE token_hash = ANY($1)', 'SELECT id FROM api_token WHERE token_hash = ANY($1)'],
    ["SELECT 'ünïcødé 🎉', id FROM api_token WHERE token_hash = $1", "SELECT 'ünïcødé 🎉', id FROM api_token WHERE token_hash IN ($1, $2, $3)"],
  ])('%s', (sql, expected) => {
    expect(parse(sql).text).toBe(expected);
  });

  it('adds parameters after the client count, typed like the source', () => {
    const { text, rw } = parse('SELECT id FROM api_token WHERE token_hash = $2 AND id = $1', [23, 1043]);
    expect(text).toBe('SELECT id FROM api_token WHERE token_hash IN ($2, $3, $4) AND id = $1');
    expect(rw.clientCount).toBe(2);
    expect(rw.total).toBe(4);
    expect(rw.paramTypes).toEqual([23, 1043, 1043, 1043]);
    expect(rw.formatFrom).toEqual([2, 2]);
    expect(rw.scalars.map((s) => [s.src, s.targets])).toEqual([[2, [2, 3, 4]]]);
  });

  it('never reuses a parameter that is also used elsewhere', () => {
    const { text, rw } = parse('SELECT id FROM api_token WHERE token_hash = $1 OR secret IS NULL AND id::text = $1');
    expect(text).toBe('SELECT id FROM api_token WHERE token_hash IN ($2, $3, $4) OR secret IS NULL AND id::text = $1');
    expect(rw.scalars[0]!.targets).toEqual([2, 3, 4]);
  });

  it('shares the slots of one parameter compared twice under one key, not under two', () => {
    expect(parse('SELECT 1 FROM api_token WHERE token_hash = $1 OR token_hash <> $1').text).toBe(
      'SELECT 1 FROM api_token WHERE token_hash IN ($1, $2, $3) OR token_hash NOT IN ($1, $2, $3)',
    );
    expect(parse('SELECT 1 FROM api_token a, other o WHERE a.token_hash = $1 AND o.h = $1').text).toBe(
      'SELECT 1 FROM api_token a, other o WHERE a.token_hash IN ($2, $3, $4) AND o.h IN ($5, $6, $7)',
    );
  });

  it('turns a literal of a prepared statement into parameters filled at Bind', () => {
    const { text, rw } = parse(`SELECT id FROM api_token WHERE token_hash = 'abc' AND id = $1`);
    expect(text).toBe('SELECT id FROM api_token WHERE token_hash IN ($2, $3, $4) AND id = $1');
    expect(rw.scalars).toHaveLength(1);
    expect(rw.scalars[0]!.value!.toString()).toBe('abc');
  });

  it('keeps an array parameter in place, or renames it when it is used elsewhere', () => {
    expect(parse('SELECT 1 FROM api_token WHERE token_hash = ANY($1)').rw.arrays).toEqual([expect.objectContaining({ src: 1, target: 1 })]);
    const r = parse('SELECT 1 FROM api_token WHERE token_hash = ANY($1) AND cardinality($1::text[]) > 0');
    expect(r.text).toBe('SELECT 1 FROM api_token WHERE token_hash = ANY($2) AND cardinality($1::text[]) > 0');
  });

  it('refuses a comparison it cannot locate with certainty', () => {
    // A row comparison is refused by the analysis already (test/searchable/searchable-rows.test.ts);
    // a site whose operator is not where the analysis put it is refused here.
    const { plan: p } = plan('SELECT 1 FROM api_token WHERE token_hash = $1');
    const moved = p.predicates.map((s) => ({ ...s, location: s.location + 1 }));
    expect(() => statementShape('SELECT 1 FROM api_token WHERE token_hash = $1', moved)).toThrow(RewriteError);
  });
});

describe('simple protocol (literals)', () => {
  it('replaces only the literal when there is one candidate', () => {
    expect(literals(`SELECT "api_token"."id" FROM "api_token" WHERE "api_token"."token_hash" = 'abc' LIMIT 21`, 1)).toBe(
      `SELECT "api_token"."id" FROM "api_token" WHERE "api_token"."token_hash" = 'abc#1' LIMIT 21`,
    );
  });

  it.each([
    [`SELECT 1 FROM api_token WHERE token_hash = E'a\\'b'`, `SELECT 1 FROM api_token WHERE token_hash = 'a'b#1'`],
    [`SELECT 1 FROM api_token WHERE token_hash IN ('a')`, `SELECT 1 FROM api_token WHERE token_hash IN ('a#1')`],
    [`SELECT 1 FROM api_token WHERE token_hash IN ('a', 'b') OR token_hash = 'c'`, `SELECT 1 FROM api_token WHERE token_hash IN ('a#1', 'b#1') OR token_hash = 'c#1'`],
    [`SELECT 1 FROM api_token WHERE token_hash = ANY(ARRAY['a'])`, `SELECT 1 FROM api_token WHERE token_hash = ANY(ARRAY['a#1'])`],
  ])('one candidate: the literal token alone is replaced: %s', (sql, expected) => {
    expect(literals(sql, 1)).toBe(expected);
  });

  it.each([
    [`SELECT 1 FROM api_token WHERE token_hash = 'a'`, `SELECT 1 FROM api_token WHERE token_hash IN ('a#1', 'a#2')`],
    [`SELECT 1 FROM api_token WHERE token_hash IN ('a')`, `SELECT 1 FROM api_token WHERE token_hash IN ('a#1', 'a#2')`],
    [`SELECT 1 FROM api_token WHERE token_hash = ANY(ARRAY['a'])`, `SELECT 1 FROM api_token WHERE token_hash = ANY(ARRAY['a#1', 'a#2'])`],
    [`SELECT 1 FROM api_token WHERE 'a' <> token_hash`, `SELECT 1 FROM api_token WHERE token_hash NOT IN ('a#1', 'a#2')`],
    [`SELECT 1 FROM api_token WHERE token_hash IN ('a', E'b\\'c')`, `SELECT 1 FROM api_token WHERE token_hash IN ('a#1', 'a#2', 'b'c#1', 'b'c#2')`],
    [
      `SELECT 1 FROM api_token WHERE 'a' IS NOT DISTINCT FROM token_hash`,
      `SELECT 1 FROM api_token WHERE (token_hash IS NOT DISTINCT FROM 'a#1' OR token_hash IS NOT DISTINCT FROM 'a#2')`,
    ],
  ])('widens with two candidates: %s', (sql, expected) => {
    expect(literals(sql, 2)).toBe(expected);
  });
});

