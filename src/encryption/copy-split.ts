// Splitting a COPY text or CSV line into fields as Postgres does (copyfromparse.c
// CopyReadAttributesText/CSV), by memchr-speed byte search over the whole buffer.
import { BS, CopyDataError, type ResolvedCopyFormat } from './copy-format.js';

/**
 * Next position of one byte at or after p, remembering the last answer so a
 * left-to-right walk costs one memchr-speed pass over the buffer per byte value.
 */
export class ByteFinder {
  private from = 1;
  private at = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly byte: number,
  ) {}
  /** Index of the first `byte` at or after p, or buf.length when there is none. */
  next(p: number): number {
    if (this.byte < 0) return this.buf.length;
    if (p >= this.from && p <= this.at) return this.at;
    const i = this.buf.indexOf(this.byte, p);
    this.from = p;
    this.at = i < 0 ? this.buf.length : i;
    return this.at;
  }
}

/** Finders for splitting the lines of one buffer into fields. */
export class FieldFinders {
  readonly delim: ByteFinder;
  /** Backslash (text) or quote (csv). */
  readonly special: ByteFinder;
  readonly escape: ByteFinder;
  constructor(fmt: ResolvedCopyFormat, buf: Buffer) {
    this.delim = new ByteFinder(buf, fmt.delim);
    this.special = new ByteFinder(buf, fmt.csv ? fmt.quote : BS);
    this.escape = new ByteFinder(buf, fmt.escape);
  }
}

/** Raw byte spans of the first fields of a line (reused between lines). */
export class FieldSpans {
  readonly start: number[] = [];
  readonly end: number[] = [];
  /** CSV: the field had a quote somewhere (so it is never NULL). */
  readonly quoted: boolean[] = [];
  count = 0;
  /** Another field follows the last one recorded. */
  more = false;
}

/**
 * Splits the line buf[ls, le) into fields 0..last, as Postgres does: in text a
 * backslash escapes the next byte (a lone trailing backslash is not part of the
 * field); in CSV a delimiter inside quotes is data. The line has no terminator.
 */
export function splitFields(
  fmt: ResolvedCopyFormat,
  buf: Buffer,
  ls: number,
  le: number,
  last: number,
  f: FieldFinders,
  out: FieldSpans,
): void {
  let p = ls;
  let i = 0;
  for (;;) {
    const fs = p;
    let fe = le;
    let delimAt = -1;
    let quoted = false;
    for (;;) {
      const d = f.delim.next(p);
      const s = f.special.next(p);
      if (s < d && s < le) {
        if (!fmt.csv) {
          if (s + 1 >= le) {
            fe = s;
            break;
          }
          p = s + 2;
          continue;
        }
        quoted = true;
        p = closeQuote(fmt, buf, s + 1, le, f);
        continue;
      }
      if (d < le) {
        fe = d;
        delimAt = d;
      }
      break;
    }
    if (i <= last) {
      out.start[i] = fs;
      out.end[i] = fe;
      out.quoted[i] = quoted;
    }
    i++;
    if (delimAt < 0 || i > last) {
      out.more = delimAt >= 0;
      break;
    }
    p = delimAt + 1;
  }
  out.count = Math.min(i, last + 1);
}

/** Position just past the quote closing a CSV quoted section that starts at p. */
function closeQuote(fmt: ResolvedCopyFormat, buf: Buffer, p: number, le: number, f: FieldFinders): number {
  for (;;) {
    const q = f.special.next(p);
    const e = f.escape.next(p);
    if (e < q && e < le) {
      const c = e + 1 < le ? buf[e + 1] : -1;
      p = c === fmt.quote || c === fmt.escape ? e + 2 : e + 1;
      continue;
    }
    if (q >= le) throw new CopyDataError('COPY_BAD_DATA', 'unterminated CSV quoted field');
    return q + 1;
  }
}
