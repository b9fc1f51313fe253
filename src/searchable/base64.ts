// Padded base64url (Fernet's token text) written straight into a buffer: a
// lookup's candidates are `header + token text`, so encoding into the candidate
// saves building the text as a string and copying it out again (Node can only
// encode to a string). Encodes public bytes only (ciphertext, IV, MAC), so the
// table lookups indexed by them leak nothing.
const ALPHABET = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_', 'latin1');
const PAD = 0x3d; // '='

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
    out[o] = ALPHABET[v >>> 18]!;
    out[o + 1] = ALPHABET[(v >>> 12) & 63]!;
    out[o + 2] = ALPHABET[(v >>> 6) & 63]!;
    out[o + 3] = ALPHABET[v & 63]!;
    o += 4;
  }
  if (rem === 1) {
    const v = src[i]!;
    out[o] = ALPHABET[v >>> 2]!;
    out[o + 1] = ALPHABET[(v & 3) << 4]!;
    out[o + 2] = PAD;
    out[o + 3] = PAD;
    o += 4;
  } else if (rem === 2) {
    const v = (src[i]! << 8) | src[i + 1]!;
    out[o] = ALPHABET[v >>> 10]!;
    out[o + 1] = ALPHABET[(v >>> 4) & 63]!;
    out[o + 2] = ALPHABET[(v & 15) << 2]!;
    out[o + 3] = PAD;
    o += 4;
  }
  return o;
}
