// Strict base64url (RFC 4648 §5) for envelope parts and Fernet tokens.
// Node's Buffer.from(s, 'base64url') skips characters outside the alphabet and
// accepts non-zero trailing bits, so two different strings can decode to the
// same bytes. Here every byte string has exactly one accepted encoding: a
// one-character change to a stored value always changes what it decodes to, or
// is rejected.

const INVALID = 0xff;
const DECODE = new Uint8Array(256).fill(INVALID);
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;
const PAD = 0x3d; // '='

/** Unpadded base64url. */
export function encodeUnpadded(b: Buffer): string {
  return b.toString('base64url');
}

/** Padded base64url, as Fernet tokens are written. */
export function encodePadded(b: Buffer): string {
  const s = b.toString('base64url');
  const rem = b.length % 3;
  return rem === 0 ? s : rem === 1 ? s + '==' : s + '=';
}

/**
 * Decodes src[start, end). `padded`: the text must be padded to a multiple of
 * four (Fernet tokens); otherwise it must carry no padding (envelope parts).
 * Returns undefined for anything that is not the canonical encoding of some bytes.
 */
export function decodeStrict(src: Buffer, start: number, end: number, padded: boolean): Buffer | undefined {
  let len = end - start;
  if (len < 0) return undefined;
  if (padded) {
    if (len % 4 !== 0) return undefined;
    if (len > 0 && src[end - 1] === PAD) len -= src[end - 2] === PAD ? 2 : 1;
  }
  const rem = len % 4;
  if (rem === 1) return undefined;
  const out = Buffer.allocUnsafe(((len >>> 2) * 3) + (rem === 0 ? 0 : rem - 1));
  const full = start + len - rem;
  let o = 0;
  let i = start;
  for (; i < full; i += 4) {
    const a = DECODE[src[i]!]!;
    const b = DECODE[src[i + 1]!]!;
    const c = DECODE[src[i + 2]!]!;
    const d = DECODE[src[i + 3]!]!;
    // Valid sextets are <= 63 and INVALID is 0xff, so one OR tests all four.
    if ((a | b | c | d) > 63) return undefined;
    out[o++] = (a << 2) | (b >> 4);
    out[o++] = ((b & 0x0f) << 4) | (c >> 2);
    out[o++] = ((c & 0x03) << 6) | d;
  }
  if (rem === 2) {
    const a = DECODE[src[i]!]!;
    const b = DECODE[src[i + 1]!]!;
    // The last character's low 4 bits carry no data: they must be zero.
    if ((a | b) > 63 || (b & 0x0f) !== 0) return undefined;
    out[o++] = (a << 2) | (b >> 4);
  } else if (rem === 3) {
    const a = DECODE[src[i]!]!;
    const b = DECODE[src[i + 1]!]!;
    const c = DECODE[src[i + 2]!]!;
    if ((a | b | c) > 63 || (c & 0x03) !== 0) return undefined;
    out[o++] = (a << 2) | (b >> 4);
    out[o++] = ((b & 0x0f) << 4) | (c >> 2);
  }
  return out;
}

// Padded base64url written straight into a buffer: a stored value is `header +
// token text`, so encoding into it saves building the text as a string and
// copying it out again (Node can only encode to a string). Encodes public bytes
// only (ciphertext, IV, MAC), so the table lookups indexed by them leak nothing.
const ALPHABET_BYTES = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_', 'latin1');

/** Characters of the padded encoding of `n` bytes. */
export function paddedLength(n: number): number {
  return 4 * Math.ceil(n / 3);
}

/** Writes the padded base64url text of src[start, end) at out[at]; returns the end offset. */
export function writePadded(src: Uint8Array, start: number, end: number, out: Uint8Array, at: number): number {
  const rem = (end - start) % 3;
  const full = end - rem;
  let o = at;
  let i = start;
  for (; i < full; i += 3) {
    const v = (src[i]! << 16) | (src[i + 1]! << 8) | src[i + 2]!;
    out[o] = ALPHABET_BYTES[v >>> 18]!;
    out[o + 1] = ALPHABET_BYTES[(v >>> 12) & 63]!;
    out[o + 2] = ALPHABET_BYTES[(v >>> 6) & 63]!;
    out[o + 3] = ALPHABET_BYTES[v & 63]!;
    o += 4;
  }
  if (rem === 1) {
    const v = src[i]!;
    out[o] = ALPHABET_BYTES[v >>> 2]!;
    out[o + 1] = ALPHABET_BYTES[(v & 3) << 4]!;
    out[o + 2] = PAD;
    out[o + 3] = PAD;
    o += 4;
  } else if (rem === 2) {
    const v = (src[i]! << 8) | src[i + 1]!;
    out[o] = ALPHABET_BYTES[v >>> 10]!;
    out[o + 1] = ALPHABET_BYTES[(v >>> 4) & 63]!;
    out[o + 2] = ALPHABET_BYTES[(v & 15) << 2]!;
    out[o + 3] = PAD;
    o += 4;
  }
  return o;
}
