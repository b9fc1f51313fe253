// The literal-masking lexer (src/sql/shape.ts): its segments are Postgres'
// tokens (checked against libpg_query's scanner on generated texts), its string
// values are the parser's, and it gives up where it could disagree.
import { parseSync, scanSync } from 'libpg-query';
import { beforeAll, describe, expect, test } from 'vitest';
import { initSql } from '../../src/sql/index.js';
import { maskLiterals, segmentValue } from '../../src/sql/shape.js';
import { rng, stringLiteral, type Rng } from './shape-gen.js';

beforeAll(() => initSql());

const mask = (sql: string) => maskLiterals(Buffer.from(sql, 'utf8'));
const keyOf = (sql: string) => mask(sql)?.key;

describe('keys', () => {
  test('texts that differ only in literal values and comments share a key', () => {
    const a = `SELECT "t"."id" FROM "t" WHERE "t"."h" = 'abc' AND n = 42 LIMIT 21 -- a comment`;
    const b = `SELECT "t"."id" FROM "t" WHERE "t"."h" = 'x''y\\z' AND n = 7 LIMIT 3 -- it's 'other'`;
    expect(keyOf(a)).toBeDefined();
    expect(keyOf(a)).toBe(keyOf(b));
    expect(keyOf("SELECT /* 'q' */ 1.5e3, $$x$$, E'\\n'")).toBe(keyOf("SELECT /* */ .5, $$y'z$$, E'\\''"));
  });

  test('everything else is part of the key', () => {
    const base = keyOf("SELECT a FROM t WHERE h = 'x'");
    for (const other of [
      "SELECT a FROM t WHERE h = ''", // empty strings stay: '' has its own plans
      "SELECT a FROM t WHERE h = E'x'", // the kind of literal
      'SELECT a FROM t WHERE h = $$x$$',
      "SELECT a FROM t WHERE h = 'x'::text",
      "SELECT a FROM t WHERE H = 'x'",
      "SELECT a FROM t WHERE \"h\" = 'x'",
      "SELECT a FROM t WHERE h  = 'x'",
      'SELECT a FROM t WHERE h = 1',
    ]) {
      expect(keyOf(other), other).not.toBe(base);
    }
    expect(keyOf('SELECT 1')).not.toBe(keyOf('SELECT 2147483648')); // ICONST vs FCONST
    expect(keyOf('SELECT 2147483647')).toBe(keyOf('SELECT 0000000000001'));
    expect(keyOf('SELECT 1.0')).toBe(keyOf('SELECT 99999999999'));
  });

  test('identifiers, parameters and operators are not literals', () => {
    const m = mask(`SELECT "it's", t1, a$b$c, $1, $12::text, x||'y', e, e 'z', n'w', date '2020-01-01' FROM "a""b"`)!;
    const texts = m.segments.map((s) => Buffer.from(`SELECT "it's", t1, a$b$c, $1, $12::text, x||'y', e, e 'z', n'w', date '2020-01-01' FROM "a""b"`).toString('utf8', s.start, s.end));
    expect(texts).toEqual(["'y'", "'z'", "'w'", "'2020-01-01'"]);
  });

  test('gives up where it could disagree with the scanner', () => {
    for (const sql of [
      "SELECT 'a'\n'b'", // continuation
      "SELECT 'a' -- c\n'b'",
      "SELECT 'a' /* c */ 'b'",
      "SELECT U&'d\\0061t' UESCAPE '\\'",
      'SELECT U&"x"',
      "SELECT 'unterminated",
      'SELECT "unterminated',
      'SELECT $x$ unterminated',
      'SELECT /* unterminated',
      'SELECT /* nested /* */',
      'SELECT 0x1F',
      'SELECT 1_000',
      'SELECT 1..2',
      'SELECT 1e',
      'SELECT 1abc',
      'SELECT $1abc',
      'SELECT $ 1',
    ]) {
      expect(mask(sql), sql).toBeUndefined();
    }
    expect(mask('SELECT /* nested /* */ */ 1')).toBeDefined();
  });
});

describe('values', () => {
  test('decodes like the parser, or defers to it', () => {
    const cases: [string, string | undefined][] = [
      ["'it''s'", "it's"],
      ["'a\\b'", 'a\\b'],
      ["E'a\\\\b\\'c''d'", "a\\b'c'd"],
      ["E'\\n\\t\\r\\b\\f\\v\\q\\x41\\x4a4\\101\\7'", '\n\t\r\b\f\vqAJ4A\u0007'],
      ["E'\\xC3\\xA9'", 'é'],
      ["E'\\xC3'", undefined], // invalid UTF-8: the parser refuses it
      ["E'\\0'", undefined],
      ["E'\\400'", undefined], // wraps to NUL
      ["E'\\u00e9'", undefined], // Unicode escapes: left to the parser
      ['$$a$b$$', 'a$b'],
      ['$tag$ $$ $ta $tag$', ' $$ $ta '],
      ["'✓ é 😀'", '✓ é 😀'],
    ];
    for (const [lit, want] of cases) {
      const b = Buffer.from(`SELECT ${lit}`, 'utf8');
      const m = maskLiterals(b);
      expect(m?.segments, lit).toHaveLength(1);
      expect(segmentValue(b, m!, m!.segments[0]!), lit).toBe(want);
      if (want !== undefined) expect(parserValue(`SELECT ${lit}`), lit).toBe(want);
    }
  });
});

function parserValue(sql: string): string {
  const tree = parseSync(sql) as any;
  return tree.stmts[0].stmt.SelectStmt.targetList[0].ResTarget.val.A_Const.sval.sval ?? '';
}

/** Random pieces of SQL text: every token kind the lexer knows, and a few it skips over. */
function piece(r: Rng): string {
  switch (r.int(16)) {
    case 0:
      return stringLiteral(r, r.pick(['plain', 'escape', 'dollar']));
    case 1:
      return `/*${r.pick(["'", '"', '$$', '--', ' /* nested */ ', 'x', '*', '/'])}*/`;
    case 2:
      return `-- ${r.pick(["it's", '"q"', '/*', '$$'])}\n`;
    case 3:
      return r.pick(['0', '7', '42', '2147483647', '2147483648', '99999999999', '1.5', '.25', '3.', '1e5', '2.5E-3', '00012']);
    case 4:
      return r.pick(['"it\'s"', '"a""b"', '"$$"', '"--"', '"é"']);
    case 5:
      return r.pick(['$1', '$23']);
    case 6:
      return r.pick(['t1', 'a$b', 'x_y', 'é', 'e', 'E', 'n', 'date', 'interval', 'café']);
    case 7:
      return r.pick(["B'0101'", "X'1F'", "N'nat'"]);
    case 8:
      return r.pick(['::text', '::varchar(10)', '||', '<>', '=', '+', '-', '*', '/', '@', '#', '(', ')', ',', '.', '[', ']', ';']);
    default:
      return r.pick([' ', ' ', '  ', '\n', '\t', ' ', '\r\n']);
  }
}

interface Tok {
  start: number;
  end: number;
  tokenName: string;
  text: string;
}

describe('against the scanner', () => {
  test('every masked segment is one Postgres token, and every literal token of a masked text is masked', () => {
    const r = rng(20240601);
    let checked = 0;
    for (let n = 0; n < 3000; n++) {
      let sql = 'SELECT ';
      const count = 1 + r.int(12);
      for (let i = 0; i < count; i++) sql += piece(r) + (r.int(3) === 0 ? '' : ' ');
      const b = Buffer.from(sql, 'utf8');
      const m = maskLiterals(b);
      let tokens: Tok[];
      try {
        tokens = scanSync(sql).tokens as Tok[];
      } catch {
        continue; // the scanner rejects it: nothing to agree on
      }
      if (!m) continue;
      checked++;
      const byStart = new Map(tokens.map((t) => [t.start, t]));
      for (const s of m.segments) {
        const t = byStart.get(s.start);
        expect(t, `${sql} @${s.start}`).toBeDefined();
        expect([t!.end, kindOf(t!)], sql).toEqual([s.end, s.kind === 'e' || s.kind === 'd' ? 's' : s.kind]);
      }
      const masked = new Set(m.segments.map((s) => s.start));
      for (const t of tokens) {
        const k = kindOf(t);
        if (k === undefined || (k === 's' && isEmptyString(t.text))) continue;
        expect(masked.has(t.start), `${sql}: ${t.text}`).toBe(true);
      }
    }
    expect(checked).toBeGreaterThan(500);
  });
});

describe('against the scanner, on noise', () => {
  test('random strings over the characters that matter', () => {
    const r = rng(7);
    const alphabet = ["'", "'", '"', '$', '$', '-', '-', '/', '*', 'e', 'E', 'u', 'U', '&', 'b', 'x', 'n', '1', '0', '.', ' ', '\n', '\r', '\\', '_', 'é', 'a', ':', '+'];
    let checked = 0;
    for (let n = 0; n < 20000; n++) {
      let sql = 'SELECT ';
      const len = 1 + r.int(24);
      for (let i = 0; i < len; i++) sql += r.pick(alphabet);
      let tokens: Tok[];
      try {
        tokens = scanSync(sql).tokens as Tok[];
      } catch {
        continue;
      }
      const m = maskLiterals(Buffer.from(sql, 'utf8'));
      if (!m) continue;
      checked++;
      const byStart = new Map(tokens.map((t) => [t.start, t]));
      for (const s of m.segments) {
        const t = byStart.get(s.start);
        expect(t && [t.end, kindOf(t)], JSON.stringify(sql)).toEqual([s.end, s.kind === 'e' || s.kind === 'd' ? 's' : s.kind]);
      }
      const masked = new Set(m.segments.map((s) => s.start));
      for (const t of tokens) {
        const k = kindOf(t);
        if (k === undefined || (k === 's' && isEmptyString(t.text))) continue;
        expect(masked.has(t.start), `${JSON.stringify(sql)}: ${t.text}`).toBe(true);
      }
    }
    expect(checked).toBeGreaterThan(2000);
  });
});

function kindOf(t: Tok): string | undefined {
  switch (t.tokenName) {
    case 'SCONST':
      return 's';
    case 'ICONST':
      return 'i';
    case 'FCONST':
      return 'f';
    case 'SQL_COMMENT':
    case 'C_COMMENT':
      return 'c';
    default:
      return undefined;
  }
}

const isEmptyString = (text: string) => text === "''" || text === "E''" || text === "e''" || /^\$([^$]*)\$\$\1\$$/.test(text);
