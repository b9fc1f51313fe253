// The per-field COPY codecs: every escape Postgres reads, the bytes COPY TO writes, and round trips.
import { describe, expect, it } from 'vitest';
import { assertValidText, decodeCsvField, decodeTextField, encodeCsvField, encodeTextField } from '../../src/encryption/copy-fields.js';
import { CopyDataError, resolveCopyFormat } from '../../src/encryption/copy-format.js';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

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
