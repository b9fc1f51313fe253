import { beforeAll, describe, expect, test } from 'vitest';
import { initSql, type CopyInPlan, type CopyOutPlan } from '../../src/sql/index.js';
import { expectPlan, expectReject, makeAnalyzer } from './fixtures.js';

beforeAll(() => initSql());

const a = makeAnalyzer();
const copyIn = (sql: string) => expectPlan(a.analyze(sql)).copies[0] as CopyInPlan;
const copyOut = (sql: string) => expectPlan(a.analyze(sql)).copies[0] as CopyOutPlan;
const fieldNames = (p: CopyInPlan) => p.fields.map((f) => f?.column ?? null);
const outKinds = (p: CopyOutPlan) => p.fields?.map((f) => (f.kind === 'encrypted' ? `enc:${f.target.column}` : f.kind === 'opaque' ? `opaque:${f.columns.map((c) => c.column).join('+')}` : f.kind));

describe('COPY … FROM STDIN', () => {
  test('text format with a column list: defaults', () => {
    const p = copyIn('COPY users (id, ssn, name, email) FROM STDIN');
    expect(p).toMatchObject({ direction: 'in', statement: 0, viaClient: true, schema: 'public', table: 'users', format: 'text', delimiter: '\t', null: '\\N', header: false });
    expect(fieldNames(p)).toEqual([null, 'ssn', null, 'email']);
    expect(p.fields[3]!.policy.searchable).toBe(true);
  });

  test('without a column list the catalog order is used; unknown catalog is refused', () => {
    expect(fieldNames(copyIn('COPY users FROM STDIN'))).toEqual([null, null, 'ssn', 'email', 'notes']);
    const e = expectReject(makeAnalyzer({}).analyze('COPY users FROM STDIN'), 'unknown_columns');
    expect(e.message).toContain('public.users');
  });

  test('CSV options, new and old syntax', () => {
    const p = copyIn(
      "COPY app.secrets (id, secret) FROM STDIN WITH (FORMAT csv, HEADER match, DELIMITER ';', NULL 'N', QUOTE '''', ESCAPE '\\', FORCE_NULL (secret), FORCE_NOT_NULL *, ENCODING 'UTF8', DEFAULT 'D')",
    );
    expect(p).toMatchObject({ format: 'csv', header: 'match', delimiter: ';', null: 'N', quote: "'", escape: '\\', forceNull: [1], forceNotNull: 'all', encoding: 'UTF8', defaultMarker: 'D', schema: 'app', table: 'secrets' });
    expect(fieldNames(p)).toEqual([null, 'secret']);
    const old = copyIn("COPY users (ssn, id) FROM STDIN WITH NULL AS 'x' CSV HEADER QUOTE AS '\"' FORCE NOT NULL ssn");
    expect(old).toMatchObject({ format: 'csv', header: true, null: 'x', quote: '"', escape: '"', delimiter: ',', forceNotNull: [0] });
    expect(copyIn('COPY users (ssn) FROM STDIN (FORMAT csv)')).toMatchObject({ null: '', quote: '"', escape: '"' });
    expect(copyIn('COPY users (ssn) FROM STDIN (HEADER on)').header).toBe(true);
    expect(copyIn('COPY users (ssn) FROM STDIN (HEADER 0)').header).toBe(false);
  });

  test('binary format and server-side files are refused for encrypted columns', () => {
    expect(expectReject(a.analyze('COPY users (ssn) FROM STDIN (FORMAT binary)'), 'copy_binary').message).toContain('public.users.ssn');
    expectReject(a.analyze('COPY users FROM STDIN WITH BINARY'), 'copy_binary');
    expect(expectReject(a.analyze("COPY users FROM '/tmp/users.csv'"), 'copy_server_file').message).toContain('public.users.ssn');
    expectReject(a.analyze("COPY users (ssn) FROM PROGRAM 'cat /tmp/x'"), 'copy_server_file');
    // No encrypted column among the fields: nothing to encrypt.
    expect(copyIn("COPY users (id, name) FROM '/tmp/x' (FORMAT binary)")).toMatchObject({ viaClient: false, fields: [null, null] });
  });

  test('COPY … WHERE is a condition on encrypted values', () => {
    expectReject(a.analyze("COPY users (id, ssn) FROM STDIN WHERE ssn = 'TOPSECRET'"), 'not_searchable');
    expect(copyIn('COPY users (id, ssn) FROM STDIN WHERE id > 3').fields).toHaveLength(2);
  });

  test('one plan per COPY statement, in order, when the message touches an encrypted table', () => {
    const p = expectPlan(a.analyze('COPY plain_table FROM STDIN; COPY users (ssn) FROM STDIN; COPY users TO STDOUT'));
    expect(p.copies.map((c) => [c.direction, c.statement])).toEqual([['in', 0], ['in', 1], ['out', 2]]);
    expect((p.copies[0] as CopyInPlan).fields).toEqual([]);
    expect(a.analyze('COPY plain_table FROM STDIN').kind).toBe('passthrough');
  });
});

describe('COPY … TO STDOUT', () => {
  test('a table: encrypted fields by position', () => {
    const p = copyOut('COPY users TO STDOUT WITH (FORMAT csv, HEADER, FORCE_QUOTE (ssn))');
    expect(outKinds(p)).toEqual(['plain', 'plain', 'enc:ssn', 'enc:email', 'enc:notes']);
    expect(p).toMatchObject({ format: 'csv', header: true, forceQuote: [2], viaClient: true });
    expect(outKinds(copyOut('COPY users (email, id) TO STDOUT'))).toEqual(['enc:email', 'plain']);
    expect(copyOut('COPY users TO STDOUT (FORMAT binary)').format).toBe('binary');
    expect(makeAnalyzer({}).analyze('COPY users TO STDOUT')).toMatchObject({ kind: 'plan', copies: [{ fields: undefined }] });
    expect(copyOut("COPY users TO '/tmp/out'")).toMatchObject({ viaClient: false });
  });

  test('a query: encrypted, plain, opaque (expressions over encrypted columns) and unknown fields', () => {
    expect(outKinds(copyOut("COPY (SELECT id, ssn, upper(email), u.name || ssn, 'x' FROM users u) TO STDOUT"))).toEqual([
      'plain',
      'enc:ssn',
      'opaque:email',
      'opaque:ssn',
      'plain',
    ]);
    expect(outKinds(copyOut('COPY (SELECT * FROM users) TO STDOUT'))).toEqual(['plain', 'plain', 'enc:ssn', 'enc:email', 'enc:notes']);
    expect(outKinds(copyOut('COPY (SELECT s.x FROM (SELECT ssn AS x FROM users) s) TO STDOUT'))).toEqual(['enc:ssn']);
    expect(outKinds(copyOut('COPY (SELECT (SELECT ssn FROM users LIMIT 1), k FROM orders) TO STDOUT'))).toEqual(['unknown', 'unknown']);
    expect(outKinds(copyOut('COPY (SELECT ssn FROM users UNION ALL SELECT ssn FROM archive) TO STDOUT'))).toEqual(['enc:ssn']);
    expect(copyOut('COPY (SELECT * FROM users, generate_series(1, 2)) TO STDOUT').fields).toBeUndefined();
  });

  test('COPY (INSERT … RETURNING) TO STDOUT encrypts the inserted values', () => {
    const p = expectPlan(a.analyze("COPY (INSERT INTO users (ssn) VALUES ('x') RETURNING id, ssn) TO STDOUT"));
    expect(p.literals.map((l) => l.value)).toEqual(['x']);
    expect(outKinds(p.copies[0] as CopyOutPlan)).toEqual(['plain', 'enc:ssn']);
  });

  test('conditions in COPY queries follow the predicate rules', () => {
    expectReject(a.analyze("COPY (SELECT id FROM users WHERE ssn = 'TOPSECRET') TO STDOUT"), 'not_searchable');
  });
});
