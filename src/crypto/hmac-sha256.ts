// HMAC-SHA256 under one fixed key, for Fernet's per-value MACs (RFC 2104 and
// FIPS 180-4). The SHA-256 states after the key's ipad and opad blocks are
// computed once per key (RFC 2104 §4, "precomputed"), so a MAC over a short
// token costs only the compression of its own blocks plus one outer block.
// In JS that is about 1 µs for a typical token, where node:crypto costs ~2.5 µs
// (createHmac: a new Hmac object and OpenSSL context per call) or ~1.7 µs (two
// one-shot crypto.hash calls): native calls have a fixed price, JS rounds do
// not. Long messages, where OpenSSL's per-byte speed wins, go to node:crypto.
// Output is byte-identical to createHmac (test/crypto/hmac-sha256.test.ts
// compares every length from 0 to 1,100 bytes under random keys).
// When the native addon is loaded (native.ts) the same pad states live in C and
// OpenSSL's SHA-256 runs them: ~0.2 µs per MAC. This JS path then serves only
// destroyed keys and machines without the addon.
//
// Timing: the rounds are fixed-count 32-bit arithmetic with no data-dependent
// branch or table index, so the time depends on the message length only.
import { createHmac } from 'node:crypto';
import { native, type NativeHandle } from './native.js';

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
  0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
  0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
  0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
  0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
  0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const INITIAL = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
const BLOCK = 64;
export const HMAC_BYTES = 32;
/**
 * Messages up to this many bytes (four blocks with the padding; a token of up
 * to ~180 plaintext bytes) are hashed in JS. Around 300 bytes OpenSSL's
 * per-block speed catches up with its per-call price (Node 20 and 24: ~2.1 µs
 * either way).
 */
export const JS_MAX_MESSAGE = 4 * BLOCK - 9;

// Scratch for one computation at a time (JS is single-threaded and nothing here awaits).
const W = new Int32Array(64);
const H = new Int32Array(8);
const tail = new Uint8Array(2 * BLOCK);

/**
 * One SHA-256 compression of the 64 bytes at buf[off] into state h. The rounds
 * go eight at a time: instead of shifting a..h down one variable per round, each
 * round writes the two that change (d += T1, h = T1 + T2) and the next round
 * reads the variables in rotated roles; after eight rounds every role is back in
 * place. Same arithmetic as FIPS 180-4 §6.2.2 (Ch and Maj in their
 * two-operation forms), ~10% faster than the shifting loop.
 */
function compress(h: Int32Array, buf: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++) {
    const j = off + 4 * i;
    W[i] = (buf[j]! << 24) | (buf[j + 1]! << 16) | (buf[j + 2]! << 8) | buf[j + 3]!;
  }
  for (let i = 16; i < 64; i++) {
    const w15 = W[i - 15]!;
    const w2 = W[i - 2]!;
    const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
    const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
    W[i] = (W[i - 16]! + s0 + W[i - 7]! + s1) | 0;
  }
  let a = h[0]!;
  let b = h[1]!;
  let c = h[2]!;
  let d = h[3]!;
  let e = h[4]!;
  let f = h[5]!;
  let g = h[6]!;
  let hh = h[7]!;
  let t = 0;
  for (let i = 0; i < 64; i += 8) {
    t = (hh + S1(e) + (g ^ (e & (f ^ g))) + K[i]! + W[i]!) | 0;
    d = (d + t) | 0;
    hh = (t + S0(a) + ((a & b) | (c & (a | b)))) | 0;
    t = (g + S1(d) + (f ^ (d & (e ^ f))) + K[i + 1]! + W[i + 1]!) | 0;
    c = (c + t) | 0;
    g = (t + S0(hh) + ((hh & a) | (b & (hh | a)))) | 0;
    t = (f + S1(c) + (e ^ (c & (d ^ e))) + K[i + 2]! + W[i + 2]!) | 0;
    b = (b + t) | 0;
    f = (t + S0(g) + ((g & hh) | (a & (g | hh)))) | 0;
    t = (e + S1(b) + (d ^ (b & (c ^ d))) + K[i + 3]! + W[i + 3]!) | 0;
    a = (a + t) | 0;
    e = (t + S0(f) + ((f & g) | (hh & (f | g)))) | 0;
    t = (d + S1(a) + (c ^ (a & (b ^ c))) + K[i + 4]! + W[i + 4]!) | 0;
    hh = (hh + t) | 0;
    d = (t + S0(e) + ((e & f) | (g & (e | f)))) | 0;
    t = (c + S1(hh) + (b ^ (hh & (a ^ b))) + K[i + 5]! + W[i + 5]!) | 0;
    g = (g + t) | 0;
    c = (t + S0(d) + ((d & e) | (f & (d | e)))) | 0;
    t = (b + S1(g) + (a ^ (g & (hh ^ a))) + K[i + 6]! + W[i + 6]!) | 0;
    f = (f + t) | 0;
    b = (t + S0(c) + ((c & d) | (e & (c | d)))) | 0;
    t = (a + S1(f) + (hh ^ (f & (g ^ hh))) + K[i + 7]! + W[i + 7]!) | 0;
    e = (e + t) | 0;
    a = (t + S0(b) + ((b & c) | (d & (b | c)))) | 0;
  }
  h[0] = (h[0]! + a) | 0;
  h[1] = (h[1]! + b) | 0;
  h[2] = (h[2]! + c) | 0;
  h[3] = (h[3]! + d) | 0;
  h[4] = (h[4]! + e) | 0;
  h[5] = (h[5]! + f) | 0;
  h[6] = (h[6]! + g) | 0;
  h[7] = (h[7]! + hh) | 0;
}

/** Σ1 and Σ0 of FIPS 180-4 §4.1.2 (small enough for V8 to inline). */
function S1(x: number): number {
  return ((x >>> 6) | (x << 26)) ^ ((x >>> 11) | (x << 21)) ^ ((x >>> 25) | (x << 7));
}
function S0(x: number): number {
  return ((x >>> 2) | (x << 30)) ^ ((x >>> 13) | (x << 19)) ^ ((x >>> 22) | (x << 10));
}

function writeState(h: Int32Array, out: Uint8Array, at: number): void {
  for (let i = 0; i < 8; i++) {
    const v = h[i]!;
    out[at + 4 * i] = v >>> 24;
    out[at + 4 * i + 1] = v >>> 16;
    out[at + 4 * i + 2] = v >>> 8;
    out[at + 4 * i + 3] = v;
  }
}

/** The state after hashing one 64-byte block of key ^ pad. */
function padState(key: Buffer, pad: number): Int32Array {
  const block = new Uint8Array(BLOCK).fill(pad);
  for (let i = 0; i < key.length; i++) block[i]! ^= key[i]!;
  const h = Int32Array.from(INITIAL);
  compress(h, block, 0);
  block.fill(0);
  return h;
}

export class HmacSha256Key {
  private readonly key: Buffer;
  private readonly inner: Int32Array;
  private readonly outer: Int32Array;
  /** The same pad states held by the native addon (src/crypto/native.ts), when it is loaded; gone after destroy(). */
  private native: NativeHandle | undefined;

  /** Own copies of everything derived from the key; `destroy()` zeroes them. */
  constructor(key: Buffer) {
    if (key.length > BLOCK) throw new RangeError('HMAC keys longer than one SHA-256 block are not supported here');
    this.key = Buffer.from(key);
    this.inner = padState(key, 0x36);
    this.outer = padState(key, 0x5c);
    this.native = native?.hmacKey(key);
  }

  /** The addon's copy of the pad states (for a native call that also MACs), or undefined. */
  get nativeHandle(): NativeHandle | undefined {
    return this.native;
  }

  /** HMAC of src[start, end), written to out[at, at + 32). */
  macInto(src: Uint8Array, start: number, end: number, out: Uint8Array, at: number): void {
    const n = end - start;
    if (start < 0 || n < 0 || end > src.length || at < 0 || at + HMAC_BYTES > out.length) throw new RangeError('HMAC range outside its buffer');
    if (this.native !== undefined) {
      native!.hmacInto(this.native, src, start, end, out, at);
      return;
    }
    if (n > JS_MAX_MESSAGE) {
      const d = createHmac('sha256', this.key).update(src.subarray(start, end)).digest();
      out.set(d, at);
      return;
    }
    H.set(this.inner);
    let i = start;
    for (; i + BLOCK <= end; i += BLOCK) compress(H, src, i);
    // Last partial block, 0x80, zeros, and the bit length of ipad block + message (FIPS 180-4 §5.1.1).
    const rem = end - i;
    const blocks = rem + 9 <= BLOCK ? 1 : 2;
    const last = blocks * BLOCK;
    for (let k = 0; k < rem; k++) tail[k] = src[i + k]!;
    tail[rem] = 0x80;
    tail.fill(0, rem + 1, last - 4);
    const bits = (BLOCK + n) * 8; // < 2^32 for every message taken here
    tail[last - 4] = bits >>> 24;
    tail[last - 3] = bits >>> 16;
    tail[last - 2] = bits >>> 8;
    tail[last - 1] = bits;
    compress(H, tail, 0);
    if (blocks === 2) compress(H, tail, BLOCK);
    // Outer hash: opad block (precomputed), then the 32-byte inner digest in one padded block.
    writeState(H, tail, 0);
    tail[32] = 0x80;
    tail.fill(0, 33, BLOCK - 2);
    tail[BLOCK - 2] = ((BLOCK + HMAC_BYTES) * 8) >>> 8;
    tail[BLOCK - 1] = ((BLOCK + HMAC_BYTES) * 8) & 0xff;
    H.set(this.outer);
    compress(H, tail, 0);
    writeState(H, out, at);
    // Leave no message-derived state behind in the shared scratch.
    H.fill(0);
    W.fill(0);
    tail.fill(0);
  }

  digest(data: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(HMAC_BYTES);
    this.macInto(data, 0, data.length, out, 0);
    return out;
  }

  destroy(): void {
    this.key.fill(0);
    this.inner.fill(0);
    this.outer.fill(0);
    // From here on the zeroed JS states answer, as without the addon: MACs under no key.
    if (this.native !== undefined) native!.hmacDestroy(this.native);
    this.native = undefined;
  }
}
