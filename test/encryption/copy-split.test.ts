// Splitting a COPY text/CSV line into raw field spans (escapes and quotes still in them).
import { describe, expect, it } from 'vitest';
import { resolveCopyFormat, type CopyFormat } from '../../src/encryption/copy-format.js';
import { FieldFinders, FieldSpans, splitFields } from '../../src/encryption/copy-split.js';

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
