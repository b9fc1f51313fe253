// The COPY text and CSV rules the COPY IN encryptor and COPY OUT decryptor share:
// option defaults, splitting a line into fields, and the de-escaping/escaping
// Postgres applies (copyfromparse.c CopyReadAttributesText/CSV, copyto.c
// CopyAttributeOutText/CSV). Only UTF-8 client data is supported: every byte the
// rules look for is ASCII and UTF-8 never puts an ASCII byte inside a multi-byte
// character, so scanning bytes is exact. Other client encodings are refused.
import { isUtf8 } from 'node:buffer';

export const BS = 0x5c; // backslash
export const DOT = 0x2e;
export const LF = 0x0a;
export const CR = 0x0d;

/**
 * COPY options as the SQL analysis layer reads them from the statement (field names
 * match its CopyFormatOptions, so a COPY plan can be passed as is). Binary is
 * accepted by the type only to be refused: its rows cannot be rewritten here.
 */
export interface CopyFormat {
  format: 'text' | 'csv' | 'binary';
  /** DELIMITER: one ASCII byte; default tab (text) or ',' (csv). */
  delimiter?: string;
  /** NULL: default `\N` (text) or the empty unquoted string (csv). */
  null?: string;
  /** DEFAULT (Postgres 16+, COPY FROM): a field equal to it takes the column default. */
  defaultMarker?: string;
  /** CSV QUOTE, default `"`. */
  quote?: string;
  /** CSV ESCAPE, default = quote. */
  escape?: string;
  /** HEADER: the first line is column names and passes through untouched. */
  header?: boolean | 'match';
  /** CSV FORCE_NULL / FORCE_NOT_NULL (COPY FROM), by field index, or 'all' for `*`. */
  forceNull?: readonly number[] | 'all';
  forceNotNull?: readonly number[] | 'all';
  /** CSV FORCE_QUOTE (COPY TO): these fields are always quoted. */
  forceQuote?: readonly number[] | 'all';
  /** ENCODING option, or the session's client_encoding; only UTF-8 is supported. */
  encoding?: string;
  /**
   * CSV only: does the server end the data at a line of exactly `\.`? Postgres up to
   * 17 does, 18 and later read it as data. Default true; either way the rows after
   * it are still rewritten, so no secret reaches a server that keeps reading.
   */
  csvEndMarker?: boolean;
}

export interface ResolvedCopyFormat {
  readonly csv: boolean;
  readonly delim: number;
  /** CSV quote byte; -1 in text format. */
  readonly quote: number;
  /** CSV escape byte when it differs from the quote; -1 otherwise. */
  readonly escape: number;
  readonly nullMarker: Buffer;
  readonly defaultMarker: Buffer | undefined;
  readonly header: boolean;
  readonly csvEndMarker: boolean;
  forceNull(field: number): boolean;
  forceNotNull(field: number): boolean;
  forceQuote(field: number): boolean;
}

export type CopyErrorCode = 'COPY_BAD_OPTIONS' | 'COPY_BAD_DATA' | 'COPY_BAD_ENCODING' | 'COPY_ROW_TOO_LONG';

const SQLSTATE: Record<CopyErrorCode, string> = {
  COPY_BAD_OPTIONS: '0A000', // feature_not_supported
  COPY_BAD_DATA: '22P04', // bad_copy_file_format
  COPY_BAD_ENCODING: '22021', // character_not_in_repertoire
  COPY_ROW_TOO_LONG: '54000', // program_limit_exceeded
};

/** A COPY stream the proxy cannot rewrite. Messages never quote data values. */
export class CopyDataError extends Error {
  override readonly name = 'CopyDataError';
  readonly code: CopyErrorCode;
  readonly sqlState: string;
  constructor(code: CopyErrorCode, message: string) {
    super(message);
    this.code = code;
    this.sqlState = SQLSTATE[code];
  }
}

function oneAsciiByte(value: string, what: string): number {
  const b = Buffer.from(value, 'utf8');
  if (b.length !== 1 || b[0] >= 0x80 || b[0] === LF || b[0] === CR) {
    throw new CopyDataError('COPY_BAD_OPTIONS', `COPY ${what} must be a single ASCII character other than newline`);
  }
  return b[0];
}

function marker(value: string, what: string): Buffer {
  const b = Buffer.from(value, 'utf8');
  if (b.includes(LF) || b.includes(CR)) {
    throw new CopyDataError('COPY_BAD_OPTIONS', `COPY ${what} cannot contain newline or carriage return`);
  }
  return b;
}

function fieldSet(v: readonly number[] | 'all' | undefined): (field: number) => boolean {
  if (v === 'all') return () => true;
  if (!v || v.length === 0) return () => false;
  const s = new Set(v);
  return (field) => s.has(field);
}

/** Postgres encoding names ignore case and punctuation; UNICODE is an alias of UTF8. */
export function isUtf8EncodingName(name: string): boolean {
  const clean = name.toLowerCase().replace(/[^a-z0-9]/g, '');
  return clean === 'utf8' || clean === 'unicode';
}

export function resolveCopyFormat(f: CopyFormat): ResolvedCopyFormat {
  if (f.format !== 'text' && f.format !== 'csv') {
    throw new CopyDataError('COPY_BAD_OPTIONS', `COPY format ${String(f.format)} cannot be rewritten`);
  }
  if (f.encoding !== undefined && !isUtf8EncodingName(f.encoding)) {
    throw new CopyDataError('COPY_BAD_OPTIONS', 'COPY of encrypted columns needs UTF8 client encoding');
  }
  const csv = f.format === 'csv';
  const delim = oneAsciiByte(f.delimiter ?? (csv ? ',' : '\t'), 'delimiter');
  const quote = csv ? oneAsciiByte(f.quote ?? '"', 'quote') : -1;
  const esc = csv ? oneAsciiByte(f.escape ?? f.quote ?? '"', 'escape') : -1;
  return {
    csv,
    delim,
    quote,
    escape: esc === quote ? -1 : esc,
    nullMarker: marker(f.null ?? (csv ? '' : '\\N'), 'null string'),
    defaultMarker: f.defaultMarker === undefined ? undefined : marker(f.defaultMarker, 'default string'),
    header: f.header === true || f.header === 'match',
    csvEndMarker: f.csvEndMarker ?? true,
    forceNull: csv ? fieldSet(f.forceNull) : () => false,
    forceNotNull: csv ? fieldSet(f.forceNotNull) : () => false,
    forceQuote: csv ? fieldSet(f.forceQuote) : () => false,
  };
}

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

const OCT = (c: number): boolean => c >= 0x30 && c <= 0x37;
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}
/** `\b \f \n \r \t \v` → the control byte. */
const UNESCAPE: Record<number, number> = { 0x62: 8, 0x66: 12, 0x6e: 10, 0x72: 13, 0x74: 9, 0x76: 11 };
/** Control byte → the letter COPY TO writes after a backslash (0 = written raw). */
const ESCAPE_LETTER = new Uint8Array(0x20);
for (const [letter, ctl] of Object.entries(UNESCAPE)) ESCAPE_LETTER[ctl] = Number(letter);

/** The value of a text-format field (not the null marker). Returns raw itself when it has no escapes. */
export function decodeTextField(raw: Buffer): Buffer {
  let b = raw.indexOf(BS);
  if (b < 0) return raw;
  const n = raw.length;
  const out = Buffer.allocUnsafe(n);
  let o = 0;
  let p = 0;
  while (b >= 0) {
    // Runs between escapes are short; a byte loop beats Buffer#copy's call overhead there.
    if (b - p > 32) o += raw.copy(out, o, p, b);
    else while (p < b) out[o++] = raw[p++];
    let q = b + 1;
    if (q >= n) {
      p = n; // a trailing lone backslash is dropped, as Postgres does
      break;
    }
    const c = raw[q++];
    if (OCT(c)) {
      let v = c - 0x30;
      if (q < n && OCT(raw[q])) {
        v = v * 8 + raw[q++] - 0x30;
        if (q < n && OCT(raw[q])) v = v * 8 + raw[q++] - 0x30;
      }
      out[o++] = v & 0xff;
    } else if (c === 0x78 && q < n && hexValue(raw[q]) >= 0) {
      let v = hexValue(raw[q++]);
      if (q < n && hexValue(raw[q]) >= 0) v = v * 16 + hexValue(raw[q++]);
      out[o++] = v;
    } else {
      out[o++] = UNESCAPE[c] ?? c; // any other byte stands for itself (`\\`, `\.`, `\x` without digits)
    }
    p = q;
    b = raw.indexOf(BS, p);
  }
  if (p < n) o += raw.copy(out, o, p, n);
  return out.subarray(0, o);
}

/** The value of a CSV field that had quotes (unquoted fields are their raw bytes). */
export function decodeCsvField(fmt: ResolvedCopyFormat, raw: Buffer): Buffer {
  const out = Buffer.allocUnsafe(raw.length);
  const n = raw.length;
  const quote = fmt.quote;
  const esc = fmt.escape < 0 ? quote : fmt.escape;
  let o = 0;
  let inQuote = false;
  for (let p = 0; p < n; p++) {
    const c = raw[p];
    if (!inQuote) {
      if (c === quote) inQuote = true;
      else out[o++] = c;
      continue;
    }
    if (c === esc && p + 1 < n && (raw[p + 1] === esc || raw[p + 1] === quote)) {
      out[o++] = raw[++p];
      continue;
    }
    if (c === quote) inQuote = false;
    else out[o++] = c;
  }
  if (inQuote) throw new CopyDataError('COPY_BAD_DATA', 'unterminated CSV quoted field');
  return out.subarray(0, o);
}

/**
 * Text-format bytes for a value, as COPY TO writes them: backslash, delimiter and
 * the control bytes with a letter escape are backslashed. With `avoid`, a result
 * equal to one of those markers gets its first byte written as an octal escape
 * so COPY FROM reads it as the value and not as NULL/DEFAULT.
 */
export function encodeTextField(value: Buffer, delim: number, avoid?: readonly (Buffer | undefined)[]): Buffer {
  const enc = escapeText(value, delim);
  if (!avoid || !avoid.some((m) => m !== undefined && m.length === enc.length && m.equals(enc))) return enc;
  if (value.length === 0) {
    throw new CopyDataError('COPY_BAD_DATA', 'an empty value cannot be written when NULL is the empty string');
  }
  const oct = Buffer.from('\\' + value[0].toString(8).padStart(3, '0'), 'latin1');
  return Buffer.concat([oct, escapeText(value.subarray(1), delim)]);
}

function escapeText(value: Buffer, delim: number): Buffer {
  const n = value.length;
  let i = 0;
  for (; i < n; i++) {
    const c = value[i];
    if (c === BS || c === delim || (c < 0x20 && ESCAPE_LETTER[c] !== 0)) break;
  }
  if (i === n) return value;
  const out = Buffer.allocUnsafe(n * 2);
  let o = value.copy(out, 0, 0, i);
  for (; i < n; i++) {
    const c = value[i];
    if (c < 0x20) {
      const letter = ESCAPE_LETTER[c];
      if (letter !== 0) {
        out[o++] = BS;
        out[o++] = letter;
        continue;
      }
      if (c === delim) out[o++] = BS;
    } else if (c === BS || c === delim) {
      out[o++] = BS;
    }
    out[o++] = c;
  }
  return out.subarray(0, o);
}

export interface CsvEncodeOptions {
  /** Quote even when not needed (keeps a FORCE_QUOTE column quoted). */
  forceQuote: boolean;
  /** The row has only this field: a bare `\.` would read as the end of data. */
  single: boolean;
  /** Also quote a value equal to the DEFAULT marker (COPY FROM). */
  avoidDefault: boolean;
}

/** CSV bytes for a value, as COPY TO writes them (CopyAttributeOutCSV). */
export function encodeCsvField(fmt: ResolvedCopyFormat, value: Buffer, o: CsvEncodeOptions): Buffer {
  const quote = fmt.quote;
  const esc = fmt.escape < 0 ? quote : fmt.escape;
  let use = o.forceQuote || value.equals(fmt.nullMarker);
  if (!use && o.avoidDefault && fmt.defaultMarker) use = value.equals(fmt.defaultMarker);
  if (!use && o.single && value.length === 2 && value[0] === BS && value[1] === DOT) use = true;
  if (!use) {
    for (let i = 0; i < value.length; i++) {
      const c = value[i];
      if (c === fmt.delim || c === quote || c === LF || c === CR) {
        use = true;
        break;
      }
    }
  }
  if (!use) return value;
  const out = Buffer.allocUnsafe(value.length * 2 + 2);
  let n = 0;
  out[n++] = quote;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === quote || c === esc) out[n++] = esc;
    out[n++] = c;
  }
  out[n++] = quote;
  return out.subarray(0, n);
}

/** Postgres rejects these in any text value; a value the proxy encrypts must pass the same check. */
export function assertValidText(value: Buffer): void {
  if (!isUtf8(value) || value.includes(0)) {
    throw new CopyDataError('COPY_BAD_ENCODING', 'invalid byte sequence for encoding "UTF8" in COPY data');
  }
}
