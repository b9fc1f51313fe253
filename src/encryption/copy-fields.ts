// The per-field COPY codecs: the de-escaping Postgres applies to a text or CSV field
// (copyfromparse.c) and the escaping COPY TO writes (copyto.c CopyAttributeOutText/CSV).
import { isUtf8 } from 'node:buffer';
import { BS, CR, DOT, LF, CopyDataError, type ResolvedCopyFormat } from './copy-format.js';

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
