// Byte-level helpers around the parser: admin-command detection, literal token
// ranges (from the real scanner), parameter token ranges, and splicing
// replacement literals into the original message bytes.
import { scanSync } from 'libpg-query';
import type { ByteRange } from './types.js';

const IDENT_CONT = /[A-Za-z0-9_$\u0080-\uffff]/;
const DOLLAR_QUOTE = /^\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/;

/** Skip whitespace and comments (`--…`, nested `/* … *\/`); returns the index of the first token. */
export function skipSpaceAndComments(text: string, i = 0): number {
  for (;;) {
    while (i < text.length && /\s/.test(text[i]!)) i++;
    if (text.startsWith('--', i)) {
      const nl = text.indexOf('\n', i);
      if (nl < 0) return text.length;
      i = nl + 1;
    } else if (text.startsWith('/*', i)) {
      let depth = 1;
      i += 2;
      while (i < text.length && depth > 0) {
        if (text.startsWith('/*', i)) {
          depth++;
          i += 2;
        } else if (text.startsWith('*/', i)) {
          depth--;
          i += 2;
        } else i++;
      }
    } else return i;
  }
}

/**
 * Admin commands start with the keyword CMEK (any case) after whitespace and
 * comments. They are not SQL: returns the text from the keyword on, else null.
 */
export function adminCommand(text: string): string | null {
  const i = skipSpaceAndComments(text);
  if (text.length - i < 4 || text.slice(i, i + 4).toLowerCase() !== 'cmek') return null;
  const next = text[i + 4];
  if (next !== undefined && IDENT_CONT.test(next)) return null;
  return text.slice(i);
}

/** Could the text hold DDL? Cheap pre-check before parsing an otherwise uninteresting statement. */
export function mayBeDdl(text: string): boolean {
  return /\b(create|alter|drop|import|comment|security\s+label)\b/i.test(text);
}

/** End of a `$n` token at byte offset `start`. */
export function paramRange(bytes: Buffer, start: number): ByteRange {
  let end = start + 1;
  while (end < bytes.length && bytes[end]! >= 0x30 && bytes[end]! <= 0x39) end++;
  return { start, end };
}

interface Token {
  start: number;
  end: number;
  text: string;
}

const QUOTE = 0x27;
const BACKSLASH = 0x5c;
const DOLLAR = 0x24;

/**
 * End of the string literal starting at byte `start` for the forms whose end is
 * certain from the bytes alone: '…' and E'…' not followed by a possible
 * continuation (only whitespace with a newline and then a quote continues a
 * string), and $tag$…$tag$. Undefined = ask the real scanner (U&'…', UESCAPE,
 * continuations, comments right after the literal).
 */
export function simpleLiteralEnd(bytes: Buffer, start: number): number | undefined {
  const c = bytes[start];
  if (c === DOLLAR) {
    const tagEnd = bytes.indexOf(DOLLAR, start + 1);
    if (tagEnd < 0) return undefined;
    const tag = bytes.subarray(start, tagEnd + 1);
    const close = bytes.indexOf(tag, tagEnd + 1);
    return close < 0 ? undefined : close + tag.length;
  }
  let i = start;
  const escapes = c === 0x45 || c === 0x65; // E'…'
  if (escapes) i++;
  if (bytes[i] !== QUOTE) return undefined;
  i++;
  for (;;) {
    if (i >= bytes.length) return undefined;
    const b = bytes[i]!;
    if (b === BACKSLASH && escapes) i += 2;
    else if (b === QUOTE) {
      if (bytes[i + 1] !== QUOTE) break;
      i += 2;
    } else i++;
  }
  const end = i + 1;
  let j = end;
  while (j < bytes.length) {
    const b = bytes[j]!;
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0c || b === 0x0b) j++;
    else break;
  }
  const next = bytes[j];
  if (next === QUOTE || (next === 0x2d && bytes[j + 1] === 0x2d) || (next === 0x2f && bytes[j + 1] === 0x2a)) return undefined;
  return end;
}

/** The decoded value of a simple literal, to cross-check the byte lexer against the parser. */
function simpleValue(bytes: Buffer, start: number, end: number): string | undefined {
  const c = bytes[start];
  if (c === DOLLAR) {
    const tagLen = bytes.indexOf(DOLLAR, start + 1) - start + 1;
    return bytes.subarray(start + tagLen, end - tagLen).toString('utf8');
  }
  if (c !== QUOTE) return undefined; // E'…': escapes; its end rule is exact, no cross-check
  return bytes.subarray(start + 1, end - 1).toString('utf8').replaceAll("''", "'");
}

/**
 * Byte ranges of the string-literal tokens at the given offsets (offset → decoded
 * value from the parse tree). The range covers quotes, the E/U& prefix, dollar
 * quotes, adjacent-string continuations and a trailing `UESCAPE '…'`. Simple
 * forms are measured on the bytes (and cross-checked with the value); the rest
 * come from Postgres' own scanner, run at most once. Throws if an offset does
 * not start a string token (the caller refuses).
 */
export function literalRanges(text: string, bytes: Buffer, literals: ReadonlyMap<number, string>): Map<number, ByteRange> {
  const out = new Map<number, ByteRange>();
  const hard: number[] = [];
  for (const [start, value] of literals) {
    const end = simpleLiteralEnd(bytes, start);
    const decoded = end === undefined ? undefined : simpleValue(bytes, start, end);
    if (end !== undefined && (decoded === undefined || decoded === value)) out.set(start, { start, end });
    else hard.push(start);
  }
  if (hard.length === 0) return out;
  const tokens = scanSync(text).tokens as Token[];
  for (const start of hard) {
    let lo = 0;
    let hi = tokens.length - 1;
    let idx = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = tokens[mid]!.start;
      if (s === start) {
        idx = mid;
        break;
      }
      if (s < start) lo = mid + 1;
      else hi = mid - 1;
    }
    if (idx < 0) throw new Error(`no token at byte ${start}`);
    const tok = tokens[idx]!;
    const t = tok.text;
    const isString = t.startsWith("'") || /^[eEnN]'/.test(t) || /^[uU]&'/.test(t) || DOLLAR_QUOTE.test(t);
    if (!isString) throw new Error(`token at byte ${start} is not a string literal`);
    let end = tok.end;
    const next = tokens[idx + 1];
    if (/^[uU]&'/.test(t) && next && next.text.toUpperCase() === 'UESCAPE' && tokens[idx + 2]) {
      end = tokens[idx + 2]!.end;
    }
    out.set(start, { start, end });
  }
  return out;
}

/**
 * Quote a value as a SQL string literal that means the same under any
 * standard_conforming_strings setting: plain `'…'` when it has no backslash,
 * else `E'…'` with backslashes doubled. Ciphertext (`cmek:v1:…`) is always plain.
 */
export function quoteLiteral(value: string): string {
  const q = value.replaceAll("'", "''");
  return value.includes('\\') ? `E'${q.replaceAll('\\', '\\\\')}'` : `'${q}'`;
}

/** Replace byte ranges of `sql` with new text, leaving every other byte alone. */
/**
 * `sql` with each byte range replaced. `frameCode`: return the text as a whole
 * frontend message instead (type byte, length, the text, NUL), built in the same
 * single allocation.
 */
export function spliceLiterals(sql: Buffer, replacements: readonly { start: number; end: number; text: string | Buffer }[], frameCode?: number): Buffer {
  if (replacements.length === 0 && frameCode === undefined) return sql;
  const sorted = replacements.length === 1 ? replacements : [...replacements].sort((a, b) => a.start - b.start);
  // One allocation: the size first, then every piece copied (or encoded) into place.
  let size = sql.length;
  let pos = 0;
  for (const r of sorted) {
    if (r.start < pos || r.end < r.start || r.end > sql.length) {
      throw new RangeError(`bad replacement range [${r.start}, ${r.end}) in ${sql.length} bytes`);
    }
    size += (typeof r.text === 'string' ? Buffer.byteLength(r.text, 'utf8') : r.text.length) - (r.end - r.start);
    pos = r.end;
  }
  const head = frameCode === undefined ? 0 : 5;
  const out = Buffer.allocUnsafe(size + (head === 0 ? 0 : 6));
  let o = head;
  pos = 0;
  for (const r of sorted) {
    o += sql.copy(out, o, pos, r.start);
    o += typeof r.text === 'string' ? out.write(r.text, o, 'utf8') : r.text.copy(out, o);
    pos = r.end;
  }
  o += sql.copy(out, o, pos);
  // allocUnsafe memory may hold anything: never send a byte that was not written here.
  if (o !== head + size) throw new RangeError(`spliced ${o - head} of ${size} bytes`);
  if (frameCode !== undefined) {
    out[0] = frameCode;
    out.writeInt32BE(size + 5, 1);
    out[o] = 0;
  }
  return out;
}

/** 1-based character position of a byte offset (ErrorResponse field P counts characters). */
export function charPosition(bytes: Buffer, byteOffset: number): number {
  let chars = 0;
  const end = Math.min(byteOffset, bytes.length);
  for (let i = 0; i < end; i++) if ((bytes[i]! & 0xc0) !== 0x80) chars++;
  return chars + 1;
}
