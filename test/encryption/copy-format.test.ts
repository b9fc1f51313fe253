import { describe, expect, it } from 'vitest';
import {
  CopyDataError,
  FieldFinders,
  FieldSpans,
  assertValidText,
  decodeCsvField,
  decodeTextField,
  encodeCsvField,
  encodeTextField,
  isUtf8EncodingName,
  resolveCopyFormat,
  splitFields,
  type CopyFormat,
} from '../../src/encryption/copy-format.js';
import type { CopyFormatOptions } from '../../src/sql/types.js';

// The SQL layer's COPY plan carries its options under the same names: it can be passed as is.
const planIsAFormat = (p: CopyFormatOptions): CopyFormat => p;

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

function fields(format: CopyFormat, line: string, last = 20): { raw: string[]; quoted: boolean[]; more: boolean } {
  const fmt = resolveCopyFormat(format);
  const buf = b(line);
  const spans = new FieldSpans();
  splitFields(fmt, buf, 0, buf.length, last, new FieldFinders(fmt, buf), spans);
  const raw: string[] = [];
  const quoted: boolean[] = [];
  for (let i = 0; i < spans.count; i++) {
    raw.push(buf.subarray(spans.start[i], spans.end[i]).toString());
    quoted.push(spans.quoted[i]);
  }
  return { raw, quoted, more: spans.more };
}

describe('resolveCopyFormat', () => {
  it('accepts the options of a SQL-layer COPY plan', () => {
    const plan: CopyFormatOptions = {
      format: 'csv', delimiter: ';', null: 'NA', quote: "'", escape: '\\', header: 'match',
      forceNotNull: [1], forceNull: 'all', forceQuote: [],
    };
    const f = resolveCopyFormat(planIsAFormat(plan));
    expect([f.delim, f.quote, f.escape, f.nullMarker.toString(), f.forceNull(9), f.forceNotNull(1)]).toEqual([59, 39, 92, 'NA', true, true]);
  });

  it('applies the Postgres defaults per format', () => {
    const t = resolveCopyFormat({ format: 'text' });
    expect([t.csv, t.delim, t.quote, t.escape, t.nullMarker.toString(), t.header]).toEqual([false, 9, -1, -1, '\\N', false]);
    const c = resolveCopyFormat({ format: 'csv' });
    expect([c.csv, c.delim, c.quote, c.escape, c.nullMarker.toString(), c.csvEndMarker]).toEqual([true, 44, 34, -1, '', true]);
    const e = resolveCopyFormat({ format: 'csv', quote: "'", escape: '\\', header: 'match' });
    expect([e.quote, e.escape, e.header]).toEqual([39, 92, true]);
    // ESCAPE defaults to QUOTE, and an escape equal to the quote is no separate escape.
    expect(resolveCopyFormat({ format: 'csv', quote: "'" }).escape).toBe(-1);
  });

  it('maps FORCE_NULL / FORCE_NOT_NULL / FORCE_QUOTE by field index, CSV only', () => {
    const c = resolveCopyFormat({ format: 'csv', forceNull: [1], forceNotNull: 'all', forceQuote: [2] });
    expect([c.forceNull(0), c.forceNull(1), c.forceNotNull(7), c.forceQuote(2), c.forceQuote(1)]).toEqual([false, true, true, true, false]);
    const t = resolveCopyFormat({ format: 'text', forceNull: [1] });
    expect(t.forceNull(1)).toBe(false);
  });

  it('refuses options it cannot honour, with a SQLSTATE', () => {
    const bad: CopyFormat[] = [
      { format: 'text', delimiter: '||' },
      { format: 'text', delimiter: 'é' },
      { format: 'csv', quote: '\n' },
      { format: 'text', null: 'a\nb' },
      { format: 'text', encoding: 'LATIN1' },
      { format: 'binary' },
    ];
    for (const f of bad) {
      const e = (() => {
        try {
          resolveCopyFormat(f);
        } catch (err) {
          return err;
        }
      })();
      expect(e).toBeInstanceOf(CopyDataError);
      expect((e as CopyDataError).sqlState).toBe('0A000');
    }
    expect(isUtf8EncodingName('utf-8')).toBe(true);
    expect(isUtf8EncodingName('UNICODE')).toBe(true);
    expect(resolveCopyFormat({ format: 'text', encoding: 'UTF_8' }).csv).toBe(false);
  });
});

describe('splitFields', () => {
  it('text: escaped delimiters stay inside a field; a lone trailing backslash is not part of it', () => {
    expect(fields({ format: 'text' }, 'a\tb\\\tc\td').raw).toEqual(['a', 'b\\\tc', 'd']);
    expect(fields({ format: 'text' }, 'a\t\\\\\tc').raw).toEqual(['a', '\\\\', 'c']);
    expect(fields({ format: 'text' }, 'a\t\\N\\').raw).toEqual(['a', '\\N']);
    expect(fields({ format: 'text' }, '').raw).toEqual(['']);
    expect(fields({ format: 'text' }, '\t').raw).toEqual(['', '']);
    expect(fields({ format: 'text', delimiter: '|' }, 'a|b\tc|').raw).toEqual(['a', 'b\tc', '']);
  });

  it('stops after the last wanted field and says whether more follow', () => {
    expect(fields({ format: 'text' }, 'a\tb\tc', 1)).toEqual({ raw: ['a', 'b'], quoted: [false, false], more: true });
    expect(fields({ format: 'text' }, 'a\tb', 1).more).toBe(false);
    expect(fields({ format: 'text' }, 'a', 3).raw).toEqual(['a']);
  });

  it('csv: delimiters and newlines inside quotes are data, quotes can cover part of a field', () => {
    const r = fields({ format: 'csv' }, '1,"a,b",x"y,z"w,"",,"q""q"');
    expect(r.raw).toEqual(['1', '"a,b"', 'x"y,z"w', '""', '', '"q""q"']);
    expect(r.quoted).toEqual([false, true, true, true, false, true]);
    expect(fields({ format: 'csv' }, '"l1\nl2",2').raw).toEqual(['"l1\nl2"', '2']);
    expect(fields({ format: 'csv', escape: '\\' }, '"a\\"b,c",d').raw).toEqual(['"a\\"b,c"', 'd']);
    expect(fields({ format: 'csv', escape: '\\' }, '"a\\\\",d').raw).toEqual(['"a\\\\"', 'd']);
  });

  it('csv: an unterminated quote is bad data', () => {
    expect(() => fields({ format: 'csv' }, '1,"abc')).toThrow(/unterminated CSV quoted field/);
  });
});

describe('decodeTextField', () => {
  const d = (s: string): string => decodeTextField(b(s)).toString('latin1');
  it('implements every backslash escape of the text format', () => {
    expect(d('plain')).toBe('plain');
    expect(d('\\\\')).toBe('\\');
    expect(d('\\b\\f\\n\\r\\t\\v')).toBe('\b\f\n\r\t\v');
    expect(d('\\101\\7\\08')).toBe('A\x07\x008');
    expect(d('\\1011')).toBe('A1'); // at most three octal digits
    expect(d('\\x41\\x4a\\xa\\x4G')).toBe('AJ\n\x04G'); // one or two hex digits
    expect(d('\\xZ')).toBe('xZ'); // \x without a hex digit is just x
    expect(d('\\N\\.\\q\\\t')).toBe('N.q\t'); // any other byte stands for itself
    expect(d('end\\')).toBe('end'); // a trailing lone backslash is dropped
    expect(d('\\777')).toBe('\xff'); // octal wraps to a byte like Postgres
  });

  it('does not copy a value without escapes', () => {
    const raw = b('no escapes here');
    expect(decodeTextField(raw)).toBe(raw);
  });
});

describe('decodeCsvField', () => {
  const fmt = resolveCopyFormat({ format: 'csv' });
  const fmtEsc = resolveCopyFormat({ format: 'csv', escape: '\\' });
  it('removes quotes and undoubles quotes', () => {
    expect(decodeCsvField(fmt, b('"a,b"')).toString()).toBe('a,b');
    expect(decodeCsvField(fmt, b('""')).toString()).toBe('');
    expect(decodeCsvField(fmt, b('"say ""hi"""')).toString()).toBe('say "hi"');
    expect(decodeCsvField(fmt, b('x"y,z"w')).toString()).toBe('xy,zw');
  });
  it('honours a separate ESCAPE only inside quotes and only before quote or escape', () => {
    expect(decodeCsvField(fmtEsc, b('"a\\"b"')).toString()).toBe('a"b');
    expect(decodeCsvField(fmtEsc, b('"a\\\\b"')).toString()).toBe('a\\b');
    expect(decodeCsvField(fmtEsc, b('"a\\nb"')).toString()).toBe('a\\nb');
  });
});

describe('encodeTextField', () => {
  const e = (s: string, delim = 9, avoid?: Buffer[]): string => encodeTextField(b(s), delim, avoid).toString('latin1');
  it('escapes like COPY TO', () => {
    expect(e('plain')).toBe('plain');
    expect(e('a\\b')).toBe('a\\\\b');
    expect(e('\b\f\n\r\t\v')).toBe('\\b\\f\\n\\r\\t\\v');
    expect(e('a|b', 0x7c)).toBe('a\\|b');
    expect(e('\x01', 1)).toBe('\\\x01');
    expect(e('\x01\x1f')).toBe('\x01\x1f'); // other control bytes are written raw
  });
  it('round-trips every byte value through decodeTextField', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    for (const delim of [9, 0x2c, 0x7c, 0x01]) {
      expect(decodeTextField(encodeTextField(all, delim))).toEqual(all);
    }
  });
  it('keeps a value from reading back as the NULL or DEFAULT marker when asked', () => {
    const out = encodeTextField(b('NULL'), 9, [b('NULL')]);
    expect(out.toString()).toBe('\\116ULL');
    expect(decodeTextField(out).toString()).toBe('NULL');
    expect(e('NULL')).toBe('NULL');
    expect(() => encodeTextField(b(''), 9, [b('')])).toThrow(CopyDataError);
  });
});

describe('encodeCsvField', () => {
  const fmt = resolveCopyFormat({ format: 'csv' });
  const o = { forceQuote: false, single: false, avoidDefault: false };
  const e = (s: string, opts = o, f = fmt): string => encodeCsvField(f, b(s), opts).toString();
  it('quotes only when COPY TO would', () => {
    expect(e('plain')).toBe('plain');
    expect(e('')).toBe('""'); // equals the NULL marker
    expect(e('a,b')).toBe('"a,b"');
    expect(e('a"b')).toBe('"a""b"');
    expect(e('a\nb')).toBe('"a\nb"');
    expect(e('a\rb')).toBe('"a\rb"');
    expect(e('\\.')).toBe('\\.');
    expect(e('\\.', { ...o, single: true })).toBe('"\\."');
    expect(e('x', { ...o, forceQuote: true })).toBe('"x"');
  });
  it('escapes quote and escape characters with ESCAPE', () => {
    const f = resolveCopyFormat({ format: 'csv', escape: '\\' });
    expect(e('a"b\\c', o, f)).toBe('"a\\"b\\\\c"');
    expect(e('a\\c', o, f)).toBe('a\\c'); // unquoted: the escape is not special
  });
  it('quotes a value equal to the NULL or DEFAULT marker', () => {
    const f = resolveCopyFormat({ format: 'csv', null: 'NA', defaultMarker: 'DEF' });
    expect(e('NA', o, f)).toBe('"NA"');
    expect(e('DEF', o, f)).toBe('DEF');
    expect(e('DEF', { ...o, avoidDefault: true }, f)).toBe('"DEF"');
  });
  it('round-trips arbitrary bytes through decodeCsvField', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    for (const f of [fmt, resolveCopyFormat({ format: 'csv', escape: '\\', quote: "'" })]) {
      const enc = encodeCsvField(f, all, o);
      expect(decodeCsvField(f, enc)).toEqual(all);
    }
  });
});

describe('assertValidText', () => {
  it('rejects what Postgres rejects in a text value', () => {
    expect(() => assertValidText(b('pässwörd'))).not.toThrow();
    expect(() => assertValidText(Buffer.from([0x61, 0xff]))).toThrow(/invalid byte sequence/);
    expect(() => assertValidText(Buffer.from([0x61, 0x00]))).toThrow(CopyDataError);
    expect(() => assertValidText(Buffer.from([0xe2, 0x82]))).toThrow(CopyDataError);
  });
});
