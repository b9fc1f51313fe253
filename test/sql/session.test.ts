import { beforeAll, describe, expect, test } from 'vitest';
import { initSql, SqlSession } from '../../src/sql/index.js';
import { expectPlan, expectReject, makeAnalyzer, sites, slice } from './fixtures.js';

beforeAll(() => initSql());

const newSession = () => new SqlSession(makeAnalyzer());

describe('SQL-level PREPARE / EXECUTE', () => {
  test("EXECUTE p('lit') encrypts the arguments the PREPARE writes to encrypted columns", () => {
    const s = newSession();
    const prep = expectPlan(s.analyze('PREPARE p (text, text, int) AS INSERT INTO users (ssn, name, id) VALUES ($1, $2, $3)'));
    // The PREPARE's own $n are not Bind parameters of this message.
    expect(prep.params.size).toBe(0);
    expect(prep.statements[0]!.prepare!.params.map((p) => [p.param, p.target.column])).toEqual([[1, 'ssn']]);

    const sql = "EXECUTE p('sécret', 'plain', 3)";
    const ex = expectPlan(s.analyze(sql));
    expect(sites(sql, ex)).toEqual(["'sécret' (sécret) -> users.ssn"]);
    expect(expectPlan(s.analyze('EXECUTE p(NULL, NULL, 1)')).literals).toEqual([]);
    expect(expectPlan(s.analyze("EXECUTE p('', 'x', 1)")).literals).toEqual([]);
  });

  test('EXECUTE p($1) over the extended protocol marks the Bind parameter', () => {
    const s = newSession();
    s.analyze('PREPARE p AS UPDATE users SET email = $1 WHERE id = $2');
    const ex = expectPlan(s.analyze('EXECUTE p($2::text, $1)'));
    expect([...ex.params.values()].map((p) => [p.param, p.target.column])).toEqual([[2, 'email']]);
    expect(expectReject(s.analyze('EXECUTE p($1, $1)'), 'param_conflict').message).toContain('$1');
  });

  test('EXECUTE arguments the proxy cannot encrypt are refused', () => {
    const s = newSession();
    s.analyze('PREPARE p AS INSERT INTO users (ssn) VALUES ($1)');
    const e = expectReject(s.analyze("EXECUTE p(upper('TOPSECRET'))"), 'unencryptable_value');
    expect(e.message).toContain('public.users.ssn');
    expect(e.message).not.toContain('TOPSECRET');
    expectReject(s.analyze('EXECUTE p(42)'), 'unencryptable_value');
    expectReject(s.analyze('EXECUTE p($1::int)'), 'unencryptable_value');
  });

  test('PREPARE and EXECUTE in one message, EXPLAIN ANALYZE EXECUTE, CREATE TABLE AS EXECUTE', () => {
    const s = newSession();
    const sql = "PREPARE q AS INSERT INTO users (ssn) VALUES ($1); EXECUTE q('a'); EXPLAIN ANALYZE EXECUTE q('b')";
    expect(expectPlan(s.analyze(sql)).literals.map((l) => slice(sql, l))).toEqual(["'a'", "'b'"]);
    s.analyze('PREPARE r AS SELECT $1::text AS x');
    expect(expectPlan(s.analyze("PREPARE w AS INSERT INTO users (ssn) SELECT $1 RETURNING ssn")).statements[0]!.prepare!.params).toHaveLength(1);
  });

  test('statements the proxy never saw, and DEALLOCATE', () => {
    const s = newSession();
    expect(s.analyze("EXECUTE unknown('x')").kind).toBe('passthrough');
    s.analyze('PREPARE p AS INSERT INTO users (ssn) VALUES ($1)');
    expect(expectPlan(s.analyze("EXECUTE p('x')")).literals).toHaveLength(1);
    s.analyze('DEALLOCATE p');
    expect(s.analyze("EXECUTE p('x')").kind).toBe('passthrough');
    s.analyze('PREPARE p AS INSERT INTO users (ssn) VALUES ($1)');
    s.analyze('DISCARD ALL');
    expect(s.analyze("EXECUTE p('x')").kind).toBe('passthrough');
    s.analyze('PREPARE p AS INSERT INTO users (ssn) VALUES ($1)');
    s.analyze('DEALLOCATE ALL');
    expect(s.analyze("EXECUTE p('x')").kind).toBe('passthrough');
  });

  test('a name prepared twice with different plans is refused until DEALLOCATE', () => {
    const s = newSession();
    s.analyze('PREPARE p AS INSERT INTO users (ssn) VALUES ($1)');
    s.analyze('PREPARE p AS INSERT INTO users (ssn) VALUES ($1)'); // same plan: fine
    expect(expectPlan(s.analyze("EXECUTE p('x')")).literals).toHaveLength(1);
    s.analyze('PREPARE p AS INSERT INTO users (name) SELECT $1 FROM users');
    expectReject(s.analyze("EXECUTE p('x')"), 'prepared_statement');
    s.analyze('DEALLOCATE p');
    s.analyze('PREPARE p AS INSERT INTO users (email) VALUES ($1)');
    expect(expectPlan(s.analyze("EXECUTE p('x')")).literals[0]!.target.column).toBe('email');
  });

  test('a searchable comparison on a PREPARE parameter is refused; on a literal it is rewritten in place', () => {
    const s = newSession();
    expectReject(s.analyze('PREPARE p AS SELECT * FROM users WHERE email = $1'), 'prepared_statement');
    expect(expectPlan(s.analyze("PREPARE p2 AS SELECT * FROM users WHERE email = 'x' AND id = $1")).predicates).toHaveLength(1);
  });
});

describe('session settings', () => {
  test('standard_conforming_strings=off refuses statements on encrypted tables', () => {
    const s = newSession();
    s.setServerParameter('standard_conforming_strings', 'off');
    expect(expectReject(s.analyze("INSERT INTO users (ssn) VALUES ('a\\'b')"), 'session_settings').message).toContain('standard_conforming_strings');
    expect(s.analyze('SELECT 1').kind).toBe('passthrough');
    s.setServerParameter('standard_conforming_strings', 'on');
    expect(s.analyze("INSERT INTO users (ssn) VALUES ('a')").kind).toBe('plan');
  });

  test('SET statements are tracked before the server confirms them', () => {
    const s = newSession();
    s.analyze('SET standard_conforming_strings = off');
    expectReject(s.analyze("INSERT INTO users (ssn) VALUES ('a')"), 'session_settings');
    s.analyze('RESET standard_conforming_strings');
    expect(s.analyze("INSERT INTO users (ssn) VALUES ('a')").kind).toBe('plan');
    s.analyze("SET client_encoding TO 'LATIN1'");
    expectReject(s.analyze("INSERT INTO users (ssn) VALUES ('a')"), 'session_settings');
    s.analyze("SET NAMES 'utf-8'");
    expect(s.analyze("INSERT INTO users (ssn) VALUES ('a')").kind).toBe('plan');
    s.setServerParameter('client_encoding', 'SQL_ASCII');
    expect(s.analyze("INSERT INTO users (ssn) VALUES ('a')").kind).toBe('plan');
  });
});
