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
  keywordName: string;
}

/**
 * Byte ranges of the string-literal tokens starting at the given offsets, taken
 * from Postgres' own scanner: the range covers quotes, the E/N/U& prefix,
 * dollar quotes, adjacent-string continuations and a trailing `UESCAPE '…'`.
 * Throws if an offset does not start a string token (the caller refuses).
 */
export function literalRanges(text: string, starts: Iterable<number>): Map<number, ByteRange> {
  const tokens = scanSync(text).tokens as Token[];
  const out = new Map<number, ByteRange>();
  for (const start of starts) {
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
export function spliceLiterals(sql: Buffer, replacements: readonly { start: number; end: number; text: string }[]): Buffer {
  if (replacements.length === 0) return sql;
  const sorted = [...replacements].sort((a, b) => a.start - b.start);
  const parts: Buffer[] = [];
  let pos = 0;
  for (const r of sorted) {
    if (r.start < pos || r.end < r.start || r.end > sql.length) {
      throw new RangeError(`bad replacement range [${r.start}, ${r.end}) in ${sql.length} bytes`);
    }
    parts.push(sql.subarray(pos, r.start), Buffer.from(r.text, 'utf8'));
    pos = r.end;
  }
  parts.push(sql.subarray(pos));
  return Buffer.concat(parts);
}

/** 1-based character position of a byte offset (ErrorResponse field P counts characters). */
export function charPosition(bytes: Buffer, byteOffset: number): number {
  let chars = 0;
  const end = Math.min(byteOffset, bytes.length);
  for (let i = 0; i < end; i++) if ((bytes[i]! & 0xc0) !== 0x80) chars++;
  return chars + 1;
}
