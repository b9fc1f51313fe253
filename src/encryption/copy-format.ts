// The COPY text and CSV options the COPY IN encryptor and COPY OUT decryptor share:
// their defaults, their resolution to bytes, and the error for a stream the proxy
// cannot rewrite. Lines are split into fields in copy-split.ts, fields de-escaped and
// escaped in copy-fields.ts. Only UTF-8 client data is supported: every byte the
// rules look for is ASCII and UTF-8 never puts an ASCII byte inside a multi-byte
// character, so scanning bytes is exact. Other client encodings are refused.

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
