import { beforeAll, describe, expect, test } from 'vitest';
import { adminCommand, initSql, quoteLiteral, spliceLiterals } from '../../src/sql/index.js';
import { charPosition } from '../../src/sql/lexical.js';
import { expectPlan, makeAnalyzer, slice } from './fixtures.js';

beforeAll(() => initSql());

const a = makeAnalyzer();

/** Literal sites of a statement as [exact bytes replaced, decoded value]. */
function literals(sql: string | Buffer): [string, string][] {
  const text = typeof sql === 'string' ? sql : sql.toString('utf8');
  return expectPlan(a.analyze(sql)).literals.map((l) => [slice(text, l), l.value]);
}

describe('literal byte ranges', () => {
  test('multi-byte UTF-8 before the literal: offsets are bytes', () => {
    const sql = "INSERT INTO users (name, ssn) VALUES ('héllo ✓ 🎉', 'sécret ✓')";
    expect(literals(sql)).toEqual([["'sécret ✓'", 'sécret ✓']]);
    const p = expectPlan(a.analyze(sql));
    const bytes = Buffer.from(sql);
    expect(p.literals[0]!.start).toBe(bytes.indexOf("'sécret"));
    expect(p.literals[0]!.end).toBe(bytes.length - 1);
  });

  test('Buffer input gives the same byte ranges', () => {
    const sql = "INSERT INTO users (name, ssn) VALUES ('日本語', E'\\u00e9\\n')";
    const fromString = expectPlan(a.analyze(sql)).literals;
    const fromBuffer = expectPlan(a.analyze(Buffer.from(sql))).literals;
    expect(fromBuffer).toEqual(fromString);
    expect(literals(Buffer.from(sql))).toEqual([["E'\\u00e9\\n'", 'é\n']]);
  });

  test("E'' strings with escapes, doubled quotes", () => {
    expect(literals("INSERT INTO users (ssn) VALUES (E'a\\'b\\\\c\\x41\\t')")).toEqual([["E'a\\'b\\\\c\\x41\\t'", "a'b\\cA\t"]]);
    expect(literals("INSERT INTO users (ssn) VALUES (e'x')")).toEqual([["e'x'", 'x']]);
    expect(literals("INSERT INTO users (ssn) VALUES ('it''s')")).toEqual([["'it''s'", "it's"]]);
    // standard_conforming_strings=on: a backslash is an ordinary character.
    expect(literals("INSERT INTO users (ssn) VALUES ('C:\\path')")).toEqual([["'C:\\path'", 'C:\\path']]);
  });

  test('dollar quoting', () => {
    expect(literals("INSERT INTO users (ssn) VALUES ($$it's $1 'x'$$)")).toEqual([["$$it's $1 'x'$$", "it's $1 'x'"]]);
    expect(literals('INSERT INTO users (ssn) VALUES ($tag$a$$b$tag$)')).toEqual([['$tag$a$$b$tag$', 'a$$b']]);
  });

  test("Unicode escapes U&'' (with UESCAPE)", () => {
    expect(literals("INSERT INTO users (ssn) VALUES (U&'\\0041\\+01F389')")).toEqual([["U&'\\0041\\+01F389'", 'A🎉']]);
    expect(literals("INSERT INTO users (ssn) VALUES (u&'d!0061t!+000061' UESCAPE '!')")).toEqual([["u&'d!0061t!+000061' UESCAPE '!'", 'data']]);
  });

  test('adjacent-string continuation and comments', () => {
    expect(literals("INSERT INTO users (ssn) VALUES ('a'\n  'b'  \n'c')")).toEqual([["'a'\n  'b'  \n'c'", 'abc']]);
    expect(literals("INSERT /* 'x' */ INTO users (ssn) -- 'y'\nVALUES (/* c */ 'z' /* d */)")).toEqual([["'z'", 'z']]);
    expect(literals("INSERT INTO users (ssn) VALUES (N'nat')")).toEqual([["'nat'", 'nat']]);
  });

  test('splicing ciphertext leaves every other byte alone', () => {
    const sql = "SELECT '✓'; INSERT INTO users (name, ssn, email) VALUES ('ü', E'sec\\'ret', $$x$$) RETURNING id";
    const bytes = Buffer.from(sql);
    const p = expectPlan(a.analyze(bytes));
    const out = spliceLiterals(
      bytes,
      p.literals.map((l) => ({ start: l.start, end: l.end, text: quoteLiteral(`cmek:v1:${Buffer.from(l.value).toString('base64url')}`) })),
    );
    expect(out.toString()).toBe(
      `SELECT '✓'; INSERT INTO users (name, ssn, email) VALUES ('ü', 'cmek:v1:${Buffer.from("sec'ret").toString('base64url')}', 'cmek:v1:${Buffer.from('x').toString('base64url')}') RETURNING id`,
    );
    // The rewritten statement still parses and carries no plaintext.
    const again = expectPlan(a.analyze(out));
    expect(again.literals.map((l) => l.value.startsWith('cmek:v1:'))).toEqual([true, true]);
  });

  test('spliceLiterals validates ranges', () => {
    const b = Buffer.from('abcdef');
    expect(spliceLiterals(b, []).toString()).toBe('abcdef');
    expect(spliceLiterals(b, [{ start: 4, end: 6, text: 'Z' }, { start: 0, end: 1, text: 'é' }]).toString()).toBe('ébcdZ');
    expect(() => spliceLiterals(b, [{ start: 0, end: 3, text: '' }, { start: 2, end: 4, text: '' }])).toThrow(RangeError);
    expect(() => spliceLiterals(b, [{ start: 5, end: 9, text: '' }])).toThrow(RangeError);
  });

  test('spliceLiterals can build the whole Query message around the spliced text', () => {
    const b = Buffer.from("SELECT 1 FROM t WHERE h = 'é'");
    const frame = spliceLiterals(b, [{ start: 26, end: 30, text: "'cmek:v1:x'" }], 0x51);
    const text = "SELECT 1 FROM t WHERE h = 'cmek:v1:x'";
    expect(frame).toEqual(Buffer.concat([Buffer.from([0x51]), Buffer.from([0, 0, 0, 5 + text.length]), Buffer.from(text), Buffer.from([0])]));
    // Nothing to replace: still a frame (a copy), never the bare text.
    expect(spliceLiterals(Buffer.from('x'), [], 0x51)).toEqual(Buffer.from([0x51, 0, 0, 0, 6, 0x78, 0]));
  });

  test('spliceLiterals takes text or bytes, and writes every byte of its output', () => {
    const b = Buffer.from("x = 'a' AND y = 'b'");
    const out = spliceLiterals(b, [
      { start: 16, end: 19, text: Buffer.from("'cmek:v1:B'") },
      { start: 4, end: 7, text: "'é\ud800'" }, // a lone surrogate becomes U+FFFD, 3 bytes, as Buffer.byteLength counts it
    ]);
    expect(out.toString()).toBe("x = 'é\ufffd' AND y = 'cmek:v1:B'");
    expect(out.length).toBe(Buffer.byteLength(out.toString()));
  });

  test('quoteLiteral is safe under either standard_conforming_strings', () => {
    expect(quoteLiteral('cmek:v1:abc|d=')).toBe("'cmek:v1:abc|d='");
    expect(quoteLiteral("it's")).toBe("'it''s'");
    expect(quoteLiteral("a\\'b")).toBe("E'a\\\\''b'");
  });

  test('character positions count characters, not bytes', () => {
    const b = Buffer.from('éé x');
    expect(charPosition(b, b.indexOf('x'))).toBe(4);
    expect(charPosition(b, 0)).toBe(1);
  });
});

describe('admin commands', () => {
  test('CMEK keyword after whitespace and comments', () => {
    expect(adminCommand('CMEK status')).toBe('CMEK status');
    expect(adminCommand('  \n-- hello\n /* a /* nested */ b */ cmek rotate;')).toBe('cmek rotate;');
    expect(adminCommand('Cmek')).toBe('Cmek');
    expect(adminCommand('cmekx status')).toBeNull();
    expect(adminCommand('cmek_status()')).toBeNull();
    expect(adminCommand('SELECT 1; CMEK status')).toBeNull();
    expect(a.analyze('  cmek backfill users.ssn')).toEqual({ kind: 'admin', text: 'cmek backfill users.ssn' });
    expect(a.analyze(Buffer.from('/*x*/CMEK(1)'))).toEqual({ kind: 'admin', text: 'CMEK(1)' });
  });
});

describe('prefilter', () => {
  test('statements that do not mention a configured table are not parsed', () => {
    const b = makeAnalyzer();
    expect(b.analyze('SELECT 1')).toEqual({ kind: 'passthrough', isDdl: false });
    expect(b.analyze("INSERT INTO orders (x) VALUES ('x')")).toEqual({ kind: 'passthrough', isDdl: false });
    expect(b.stats).toMatchObject({ prefiltered: 2, misses: 0 });
    // Mentions "users" (in a literal): parsed, nothing to do.
    expect(b.analyze("INSERT INTO orders (x) VALUES ('users')")).toEqual({ kind: 'passthrough', isDdl: false });
    expect(b.stats).toMatchObject({ prefiltered: 2, misses: 1 });
  });

  test('a parsed statement without configured relations is passthrough', () => {
    expect(a.analyze("INSERT INTO orders (x) VALUES ('users')")).toEqual({ kind: 'passthrough', isDdl: false });
    expect(a.analyze('SELECT users_count FROM stats')).toEqual({ kind: 'passthrough', isDdl: false });
  });

  test('names match as whole identifiers only', () => {
    const b = makeAnalyzer();
    expect(b.analyze("INSERT INTO users_audit (ssn) VALUES ('x')")).toEqual({ kind: 'passthrough', isDdl: false });
    expect(b.analyze('SELECT * FROM app_users, "xusers", users$2')).toEqual({ kind: 'passthrough', isDdl: false });
    expect(b.stats).toMatchObject({ prefiltered: 2, misses: 0 });
    for (const sql of ['SELECT 1 FROM users', 'SELECT 1 FROM "users"', 'SELECT 1 FROM public.users', 'SELECT 1 FROM orders,users', 'select ssn from Users']) {
      expect(b.analyze(sql).kind).toBe('plan');
    }
    // Server-side code: only a whole-name mention is refused.
    expect(b.analyze('DO $$ BEGIN INSERT INTO users_audit VALUES (1); END $$').kind).toBe('passthrough');
  });

  test('case-insensitive, and U&"…" identifiers always take the slow path', () => {
    expect(a.analyze("INSERT INTO UsErS (ssn) VALUES ('x')").kind).toBe('plan');
    expect(expectPlan(a.analyze("INSERT INTO U&\"use\\0072s\" (ssn) VALUES ('x')")).literals).toHaveLength(1);
  });
});

describe('byte lexer vs the real scanner', () => {
  test('simple literal ends agree with scanSync on every form the lexer accepts', async () => {
    const { scanSync } = await import('libpg-query');
    const { simpleLiteralEnd } = await import('../../src/sql/lexical.js');
    const bodies = ["''", "'a'", "'it''s'", "''''", "'✓ é'", "'a\\'", "E'a\\'b'", "E'\\\\'", "e'\\x41'''", "E''", '$$a$$', '$$$$', "$t$a'b$$c$t$", '$é$x$é$'];
    const tails = ['', ',', ')', ' , 1', '::text', '\n)', ' \t)', "\n'x'", " 'x'", ' -- c\n', ' /* c */', '\r\n,'];
    let simple = 0;
    for (const body of bodies) {
      for (const tail of tails) {
        const sql = `SELECT ${body}${tail}`;
        const bytes = Buffer.from(sql);
        const tok = (scanSync(sql).tokens as { start: number; end: number }[]).find((t) => t.start === 7)!;
        const end = simpleLiteralEnd(bytes, 7);
        if (end !== undefined) {
          simple++;
          expect([sql, end]).toEqual([sql, tok.end]);
        }
      }
    }
    expect(simple).toBeGreaterThan(100);
  });

  test('continuations, comments after a literal and U& go to the scanner', async () => {
    const { simpleLiteralEnd } = await import('../../src/sql/lexical.js');
    for (const sql of ["SELECT 'a'\n'b'", "SELECT 'a' -- c", "SELECT 'a'/* c */", "SELECT U&'a'", "SELECT 'a' 'b'"]) {
      expect(simpleLiteralEnd(Buffer.from(sql), 7)).toBeUndefined();
    }
  });
});
