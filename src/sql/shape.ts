// A cheap lexer that masks a statement's literals and comments, so texts that
// differ only in their values share one key (a "shape") and one analysis
// (templates.ts). It follows Postgres' scanner (scan.l) with
// standard_conforming_strings on, and only as far as it is certain: anything
// it is unsure of (U&'…', a possible string continuation, an unterminated quote
// or comment, numeric junk such as `0x1F` or `1_000`) makes it give up, and the
// statement is parsed as usual. Two texts with one key are byte-identical
// outside their masked segments, and each masked segment is one whole token of
// the same kind in both.
import { isAscii, isUtf8 } from 'node:buffer';

/**
 * What a masked segment is:
 *  s  '…' (non-empty)           e  E'…' (non-empty)       d  $tag$…$tag$ (non-empty)
 *  i  integer that fits int32   f  any other numeric       c  comment
 * Empty strings stay in the key verbatim: `''` is never encrypted by default, so
 * an empty and a non-empty value can have different plans.
 */
export type SegmentKind = 's' | 'e' | 'd' | 'i' | 'f' | 'c';

export interface Segment {
  start: number;
  end: number;
  kind: SegmentKind;
}

export interface MaskedText {
  /** The text (latin1 of its bytes) with every segment replaced by NUL + its kind (NUL never occurs in analysed text). */
  key: string;
  segments: Segment[];
  /** The bytes as latin1: one character per byte, so byte offsets index it. */
  source: string;
  /** Every byte is ASCII: `source` is also the text itself. */
  ascii: boolean;
}

const QUOTE = 0x27;
const DQUOTE = 0x22;
const DOLLAR = 0x24;
const BACKSLASH = 0x5c;

/** Byte classes (scan.l): ident_start [A-Za-z\200-\377_], ident_cont (+ digits, `$`), digits, space, and bytes that may start a literal or comment. */
const START = 1;
const CONT = 2;
const DIGIT = 4;
const SPACE = 8;
const SPECIAL = 16;
const CLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const letter = ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) || c === 0x5f || c >= 0x80;
  if (letter) CLASS[c] = START | CONT;
  else if (c >= 0x30 && c <= 0x39) CLASS[c] = DIGIT | CONT;
  else if (c === DOLLAR) CLASS[c] = CONT | SPECIAL;
  else if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c || c === 0x0b) CLASS[c] = SPACE;
  else if (c === QUOTE || c === DQUOTE || c === 0x2d || c === 0x2f || c === 0x2e) CLASS[c] = SPECIAL;
}
/** The class of the byte at `i` (0 past the end). */
const cls = (b: Buffer, i: number): number => (i < b.length ? CLASS[b[i]!]! : 0);
const isDigit = (b: Buffer, i: number) => (cls(b, i) & DIGIT) !== 0;
const isIdentStart = (b: Buffer, i: number) => (cls(b, i) & START) !== 0;
/** ident_cont: ident_start, digits and `$`. */
const isIdentCont = (b: Buffer, i: number) => (cls(b, i) & CONT) !== 0;
/** dolq_cont: ident_start and digits (no `$`). */
const isDolqCont = (b: Buffer, i: number) => (cls(b, i) & (START | DIGIT)) !== 0;
const isSpace = (b: Buffer, i: number) => cls(b, i) === SPACE;

/** End of a `/* … *\/` comment (nested) starting at `i`, or -1 when unterminated. */
function blockCommentEnd(b: Buffer, i: number): number {
  let depth = 1;
  i += 2;
  while (i < b.length) {
    const c = b[i]!;
    if (c === 0x2f && b[i + 1] === 0x2a) {
      depth++;
      i += 2;
    } else if (c === 0x2a && b[i + 1] === 0x2f) {
      i += 2;
      if (--depth === 0) return i;
    } else i++;
  }
  return -1;
}

/** End of a `-- …` comment: the next CR or LF (not included), or the end of the text. */
function lineCommentEnd(b: Buffer, i: number): number {
  for (i += 2; i < b.length; i++) if (b[i] === 0x0a || b[i] === 0x0d) return i;
  return b.length;
}

/**
 * End of a quoted string whose opening quote is at `q`: `''` is a quote, and with
 * `escapes` (E'…') a backslash takes the next byte. -1 when unterminated.
 */
function quotedEnd(b: Buffer, q: number, escapes: boolean): number {
  let i = q + 1;
  while (i < b.length) {
    const c = b[i]!;
    if (c === BACKSLASH && escapes) i += 2;
    else if (c === QUOTE) {
      if (b[i + 1] !== QUOTE) return i + 1;
      i += 2;
    } else i++;
  }
  return -1;
}

/**
 * A quote after a string and only whitespace or comments may continue it
 * (`'a'⏎'b'` is one literal, and Postgres and libpg_query disagree about
 * comments in between): true when such a quote follows.
 */
function mayContinue(b: Buffer, i: number): boolean {
  for (;;) {
    while (isSpace(b, i)) i++;
    if (b[i] === 0x2d && b[i + 1] === 0x2d) i = lineCommentEnd(b, i);
    else if (b[i] === 0x2f && b[i + 1] === 0x2a) {
      i = blockCommentEnd(b, i);
      if (i < 0) return true; // unterminated: the parser fails anyway, stay out of it
    } else return b[i] === QUOTE;
  }
}

/** ICONST when the digits fit in int32 (Postgres' process_integer_literal), else FCONST. */
function integerKind(b: Buffer, start: number, end: number): SegmentKind {
  let s = start;
  while (s < end - 1 && b[s] === 0x30) s++;
  const len = end - s;
  if (len < 10) return 'i';
  if (len > 10) return 'f';
  return b.toString('latin1', s, end) <= '2147483647' ? 'i' : 'f';
}

/**
 * A numeric token from `i` (a digit, or `.` before a digit): decimal digits,
 * an optional fraction and exponent. Undefined for anything else that starts
 * like a number (`0x1F`, `1_000`, `1..2`, `1e`, trailing identifier characters).
 */
function numberEnd(b: Buffer, i: number): { end: number; kind: SegmentKind } | undefined {
  const start = i;
  while (isDigit(b, i)) i++;
  let float = false;
  if (b[i] === 0x2e) {
    if (b[i + 1] === 0x2e) return undefined;
    float = true;
    i++;
    while (isDigit(b, i)) i++;
  }
  if (b[i] === 0x45 || b[i] === 0x65) {
    let k = i + 1;
    if (b[k] === 0x2b || b[k] === 0x2d) k++;
    if (!isDigit(b, k)) return undefined;
    while (isDigit(b, k)) k++;
    i = k;
    float = true;
  }
  if (isIdentCont(b, i) || b[i] === 0x2e) return undefined;
  return { end: i, kind: float ? 'f' : integerKind(b, start, i) };
}

/**
 * Mask the literals and comments of a statement (its UTF-8 bytes). Undefined
 * when the lexer is not certain to agree with Postgres' scanner: then the
 * statement must be analysed in full.
 */
export function maskLiterals(b: Buffer): MaskedText | undefined {
  const source = b.toString('latin1');
  const segments: Segment[] = [];
  let key = '';
  let copied = 0;
  const mask = (start: number, end: number, kind: SegmentKind) => {
    key += source.slice(copied, start) + '\0' + kind;
    copied = end;
    segments.push({ start, end, kind });
  };
  const n = b.length;
  let i = 0;
  while (i < n) {
    const c = b[i]!;
    const k = CLASS[c]!;
    if (k === 0 || k === SPACE) {
      i++; // operators, punctuation, whitespace
    } else if ((k & START) !== 0) {
      const next = i + 1 < n ? b[i + 1]! : -1;
      const lower = c | 0x20;
      if (next === QUOTE && lower === 0x65) {
        // E'…'
        const end = quotedEnd(b, i + 1, true);
        if (end < 0 || mayContinue(b, end)) return undefined;
        if (end - i > 3) mask(i, end, 'e');
        i = end;
      } else if (next === QUOTE && (lower === 0x62 || lower === 0x78)) {
        // B'…' / X'…': no escapes, no doubled quotes; kept as they are.
        const close = b.indexOf(QUOTE, i + 2);
        if (close < 0 || mayContinue(b, close + 1)) return undefined;
        i = close + 1;
      } else if (lower === 0x75 && next === 0x26 && (b[i + 2] === QUOTE || b[i + 2] === DQUOTE)) {
        return undefined; // U&'…' / U&"…": escapes that a later UESCAPE may redefine
      } else {
        // An identifier or keyword (N'…' is the identifier N, then a plain string).
        let j = i + 1;
        while (j < n && (CLASS[b[j]!]! & CONT) !== 0) j++;
        i = j;
      }
    } else if ((k & DIGIT) !== 0 || (c === 0x2e && isDigit(b, i + 1))) {
      const num = numberEnd(b, i);
      if (!num) return undefined;
      mask(i, num.end, num.kind);
      i = num.end;
    } else if (c === QUOTE) {
      const end = quotedEnd(b, i, false);
      if (end < 0 || mayContinue(b, end)) return undefined;
      if (end - i > 2) mask(i, end, 's');
      i = end;
    } else if (c === DQUOTE) {
      // A quoted identifier: kept as it is, skipped so a quote in it is not a string.
      let j = i + 1;
      for (;;) {
        j = b.indexOf(DQUOTE, j);
        if (j < 0) return undefined;
        if (b[j + 1] !== DQUOTE) break;
        j += 2;
      }
      i = j + 1;
    } else if (c === DOLLAR) {
      if (isDigit(b, i + 1)) {
        // $n parameter
        let j = i + 1;
        while (isDigit(b, j)) j++;
        if (isIdentCont(b, j)) return undefined;
        i = j;
        continue;
      }
      let j = i + 1;
      if (isIdentStart(b, j)) while (isDolqCont(b, j)) j++;
      if (b[j] !== DOLLAR) return undefined;
      const tag = b.subarray(i, j + 1);
      const close = b.indexOf(tag, j + 1);
      if (close < 0) return undefined;
      const end = close + tag.length;
      if (mayContinue(b, end)) return undefined;
      if (close > j + 1) mask(i, end, 'd');
      i = end;
    } else if (c === 0x2d && b[i + 1] === 0x2d) {
      const end = lineCommentEnd(b, i);
      mask(i, end, 'c');
      i = end;
    } else if (c === 0x2f && b[i + 1] === 0x2a) {
      const end = blockCommentEnd(b, i);
      if (end < 0) return undefined;
      mask(i, end, 'c');
      i = end;
    } else i++;
  }
  key += source.slice(copied, n);
  return { key, segments, source, ascii: isAscii(b) };
}

/** `\b \f \n \r \t \v`; any other escaped byte stands for itself. */
const SINGLE_ESCAPES: Record<number, number> = { 0x62: 0x08, 0x66: 0x0c, 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09, 0x76: 0x0b };
const hexValue = (c: number | undefined): number => {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
};

/** The value of an E'…' body, or undefined when a full parse must decide (Unicode escapes, NUL, invalid UTF-8). */
function escapedValue(b: Buffer, start: number, end: number): string | undefined {
  const out = Buffer.allocUnsafe(end - start);
  let n = 0;
  let bytesEscaped = false;
  let i = start;
  while (i < end) {
    const c = b[i]!;
    if (c === QUOTE) {
      out[n++] = QUOTE; // '' (the body holds no lone quote)
      i += 2;
    } else if (c !== BACKSLASH) {
      out[n++] = c;
      i++;
    } else {
      const d = b[i + 1]!;
      if (d >= 0x30 && d <= 0x37) {
        let v = 0;
        let k = i + 1;
        while (k < i + 4 && b[k]! >= 0x30 && b[k]! <= 0x37) v = v * 8 + (b[k++]! - 0x30);
        if ((v & 0xff) === 0) return undefined;
        out[n++] = v & 0xff;
        bytesEscaped = true;
        i = k;
      } else if (d === 0x78 && hexValue(b[i + 2]) >= 0) {
        let v = hexValue(b[i + 2]);
        let k = i + 3;
        if (hexValue(b[k]) >= 0) v = v * 16 + hexValue(b[k++]);
        if (v === 0) return undefined;
        out[n++] = v;
        bytesEscaped = true;
        i = k;
      } else if (d === 0x75 || d === 0x55) {
        return undefined;
      } else {
        out[n++] = SINGLE_ESCAPES[d] ?? d;
        i += 2;
      }
    }
  }
  const bytes = out.subarray(0, n);
  if (bytesEscaped && !isUtf8(bytes)) return undefined;
  return bytes.toString('utf8');
}

/**
 * The value Postgres decodes for a string segment (`s`, `e`, `d`), or undefined
 * when only the parser can tell (then the statement is analysed in full).
 */
export function segmentValue(b: Buffer, m: MaskedText, seg: Segment): string | undefined {
  // ASCII text: slicing the latin1 source is decoding (and shares its memory).
  const text = (start: number, end: number) => (m.ascii ? m.source.slice(start, end) : b.toString('utf8', start, end));
  switch (seg.kind) {
    case 's': {
      const body = text(seg.start + 1, seg.end - 1);
      return body.includes("'") ? body.replaceAll("''", "'") : body;
    }
    case 'e':
      return escapedValue(b, seg.start + 2, seg.end - 1);
    case 'd': {
      const tagLen = b.indexOf(DOLLAR, seg.start + 1) - seg.start + 1;
      return text(seg.start + tagLen, seg.end - tagLen);
    }
    default:
      return undefined;
  }
}
