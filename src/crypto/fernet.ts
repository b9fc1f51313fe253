// Fernet (https://github.com/fernet/spec) on node:crypto.
// token = base64url_padded(0x80 | ts: u64 BE seconds | iv: 16 | AES-128-CBC(PKCS7) | HMAC-SHA256: 32)
// The HMAC covers everything before it and is checked (constant time) before any
// decryption, so padding errors can never be used as an oracle.
import { createCipheriv, createDecipheriv, timingSafeEqual, type Cipher, type Decipher } from 'node:crypto';
import { decodeStrict, encodePadded } from './base64url.js';
import { HMAC_BYTES, HmacSha256Key } from './hmac-sha256.js';
import { native, type NativeHandle } from './native.js';
import { fillRandom } from './random.js';

export type FernetErrorReason =
  | 'bad_base64'
  | 'too_short'
  | 'bad_version'
  | 'bad_mac'
  | 'bad_padding'
  | 'bad_length'
  | 'expired'
  | 'future';

const MESSAGES: Record<FernetErrorReason, string> = {
  bad_base64: 'token is not canonical padded base64url',
  too_short: 'token is shorter than the smallest Fernet token',
  bad_version: 'token version byte is not 0x80',
  bad_mac: 'token HMAC does not match (wrong key or altered token)',
  bad_padding: 'token plaintext padding is invalid',
  bad_length: 'token ciphertext is not a whole number of AES blocks',
  expired: 'token is older than the allowed TTL',
  future: 'token timestamp is too far in the future',
};

/** A token was rejected. Carries no key, token or plaintext bytes. */
export class FernetError extends Error {
  override readonly name = 'FernetError';
  constructor(readonly reason: FernetErrorReason) {
    super(`Fernet: ${MESSAGES[reason]} (${reason})`);
  }
}

const VERSION = 0x80;
const HEADER = 1 + 8 + 16; // version, timestamp, IV
const MAC = HMAC_BYTES;
const BLOCK = 16;
/** The MAC a token should carry, computed into one reused buffer (a MAC is public once compared). */
const expected = Buffer.alloc(MAC);
/** 73: an empty plaintext still pads to one block. */
export const MIN_TOKEN_BYTES = HEADER + BLOCK + MAC;
/** Clock skew tolerated for tokens stamped in the future (the reference implementations use 60 s). */
export const MAX_CLOCK_SKEW_SECONDS = 60;

/**
 * A 32-byte Fernet key split once into its signing and encryption halves,
 * with what every value under it reuses: the HMAC key's pad states and one AES
 * cipher per direction. Own copies: `destroy()` zeroes them.
 */
export class FernetKey {
  readonly signingKey: Buffer;
  readonly encryptionKey: Buffer;
  private readonly hmac: HmacSha256Key;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new RangeError(`a Fernet key is 32 bytes, got ${key.length}`);
    this.signingKey = Buffer.alloc(16);
    this.encryptionKey = Buffer.alloc(16);
    key.copy(this.signingKey, 0, 0, 16);
    key.copy(this.encryptionKey, 0, 16, 32);
    this.hmac = new HmacSha256Key(this.signingKey);
    this.aes = native?.aesKey(this.encryptionKey);
  }

  /** From the usual padded base64url text form (spec vectors, other implementations). */
  static fromBase64(text: string): FernetKey {
    const raw = decodeStrict(Buffer.from(text, 'utf8'), 0, Buffer.byteLength(text, 'utf8'), true);
    if (!raw || raw.length !== 32) throw new FernetError('bad_base64');
    const k = new FernetKey(raw);
    raw.fill(0);
    return k;
  }

  /** HMAC-SHA256 under the signing key of src[start, end), written to out[at, at + 32). */
  macInto(src: Uint8Array, start: number, end: number, out: Uint8Array, at: number): void {
    this.hmac.macInto(src, start, end, out, at);
  }

  /**
   * AES-128-CBC decryption of whole blocks, chained in JS over one reused ECB
   * decipher: creating a CBC decipher per value cost ~4 µs of the ~6 µs a
   * decrypt took. ECB keeps no state between update() calls when padding is
   * off and input is whole blocks, so sharing it between values is safe.
   * With the native addon, one call into a buffer allocated here instead.
   */
  decryptBlocks(ct: Buffer, iv: Buffer): Buffer {
    if (this.aes !== undefined) {
      const out = Buffer.allocUnsafe(ct.length);
      native!.cbc(this.aes, true, ct, 0, ct.length, iv, 0, out, 0);
      return out;
    }
    let d = this.ecb;
    if (d === null) {
      d = createDecipheriv('aes-128-ecb', this.encryptionKey, null);
      d.setAutoPadding(false);
      this.ecb = d;
    }
    const out = d.update(ct);
    for (let i = 0; i < 16; i++) out[i]! ^= iv[i]!;
    for (let i = 16; i < out.length; i++) out[i]! ^= ct[i - 16]!;
    return out;
  }

  /**
   * The raw token of src[start, end) with IV iv[ivAt, ivAt + 16) and timestamp
   * `ts` into out[at, …) (rawTokenLength bytes) in one native call; false when
   * this key has no native state (the JavaScript path then builds it).
   */
  sealNative(src: Uint8Array, start: number, end: number, iv: Uint8Array, ivAt: number, ts: number, out: Uint8Array, at: number): boolean {
    const mac = this.hmac.nativeHandle;
    if (this.aes === undefined || mac === undefined) return false;
    native!.fernetSeal(mac, this.aes, src, start, end, iv, ivAt, Math.floor(ts / 0x1_0000_0000), ts >>> 0, out, at);
    return true;
  }

  /**
   * AES-128-CBC encryption in place of buf[at, at + len) (whole blocks, already
   * padded) under `iv`, over ONE cipher for every value: creating a cipher per
   * value cost more than the rest of an encrypt. A CBC encipher without padding
   * carries only its chaining block C between update() calls (OpenSSL keeps it
   * as the context IV), so it encrypts a first block X as E(X ^ C). Feeding
   * X = P1 ^ iv ^ C gives E(P1 ^ iv): exactly the first block a fresh cipher
   * with `iv` would give; later blocks chain off it as usual. Byte-identical to
   * a fresh createCipheriv per value (test/crypto/fernet.test.ts checks
   * thousands in a row). With the native addon, one in-place call instead.
   */
  encryptBlocksInPlace(buf: Buffer, at: number, len: number, iv: Uint8Array): void {
    if (this.aes !== undefined) {
      native!.cbc(this.aes, false, buf, at, len, iv, 0, buf, at);
      return;
    }
    let c = this.cbc;
    const chain = this.chain;
    if (c === null) {
      chain.fill(0);
      c = createCipheriv('aes-128-cbc', this.encryptionKey, chain);
      c.setAutoPadding(false);
      this.cbc = c;
    }
    for (let i = 0; i < 16; i++) buf[at + i]! ^= iv[i]! ^ chain[i]!;
    let ct: Buffer;
    try {
      ct = c.update(buf.subarray(at, at + len));
    } catch (e) {
      this.cbc = null; // its chaining block is unknown now: start over with a fresh one
      throw e;
    }
    if (ct.length !== len) {
      this.cbc = null;
      throw new Error('AES-CBC returned a partial block run');
    }
    buf.set(ct, at);
    ct.copy(chain, 0, len - 16, len);
  }

  /** Both CBC directions held by the native addon (src/crypto/native.ts), when it is loaded; gone after destroy(). */
  private aes: NativeHandle | undefined;
  private ecb: Decipher | null = null;
  private cbc: Cipher | null = null;
  /** The last ciphertext block `cbc` produced (its chaining state). */
  private readonly chain = Buffer.alloc(16);

  /** Zeroes both halves; the key is unusable afterwards (every token fails its MAC). */
  destroy(): void {
    this.signingKey.fill(0);
    this.encryptionKey.fill(0);
    this.hmac.destroy();
    // OpenSSL's copies of the key schedule go with the objects (they cannot be zeroed from JS).
    this.ecb = null;
    this.cbc = null;
    if (this.aes !== undefined) native!.aesDestroy(this.aes); // cleansed by OpenSSL now
    this.aes = undefined; // the JS path over the zeroed halves answers from here on
  }
}

export interface EncryptOptions {
  /** 16-byte IV; default random. Fixed only for test vectors and deterministic encryption. */
  iv?: Buffer;
  /** Seconds since the epoch; default now. */
  timestamp?: number;
}

export interface DecryptOptions {
  /** Reject tokens older than this (and stamped > 60 s in the future). Undefined = no time checks. */
  ttlSeconds?: number;
  /** Seconds since the epoch; default now. */
  now?: number;
}

function toKey(key: FernetKey | Buffer): FernetKey {
  return key instanceof FernetKey ? key : new FernetKey(key);
}

/** Bytes of the raw token of an n-byte plaintext: header, the plaintext padded to whole blocks (PKCS7), MAC. */
export function rawTokenLength(n: number): number {
  return HEADER + (n - (n % BLOCK)) + BLOCK + MAC;
}

/** The raw token bytes (not yet base64url-encoded). */
export function encryptRaw(key: FernetKey | Buffer, plaintext: Buffer | string, opts?: EncryptOptions): Buffer {
  const k = toKey(key);
  const pt = typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext;
  const ts = opts?.timestamp ?? Math.floor(Date.now() / 1000);
  if (!Number.isSafeInteger(ts) || ts < 0) throw new RangeError('Fernet timestamp must be a non-negative integer');
  const out = Buffer.allocUnsafe(rawTokenLength(pt.length));
  if (opts?.iv && opts.iv.length !== 16) throw new RangeError(`a Fernet IV is 16 bytes, got ${opts.iv.length}`);
  if (!opts?.iv) fillRandom(out, 9, 16);
  if (k.sealNative(pt, 0, pt.length, opts?.iv ?? out, opts?.iv ? 0 : 9, ts, out, 0)) return out;
  const ctLen = out.length - HEADER - MAC;
  out[0] = VERSION;
  out.writeUInt32BE(Math.floor(ts / 0x1_0000_0000), 1);
  out.writeUInt32BE(ts >>> 0, 5);
  if (opts?.iv) opts.iv.copy(out, 9);
  // PKCS7 padding, then CBC in place over the padded plaintext.
  pt.copy(out, HEADER);
  out.fill(ctLen - pt.length, HEADER + pt.length, HEADER + ctLen);
  try {
    k.encryptBlocksInPlace(out, HEADER, ctLen, out.subarray(9, HEADER));
  } catch (e) {
    out.fill(0, HEADER, HEADER + ctLen); // no stray plaintext
    throw e;
  }
  k.macInto(out, 0, HEADER + ctLen, out, HEADER + ctLen);
  return out;
}

/** A Fernet token (padded base64url text). */
export function encrypt(key: FernetKey | Buffer, plaintext: Buffer | string, opts?: EncryptOptions): string {
  return encodePadded(encryptRaw(key, plaintext, opts));
}

/** Decrypts a token given as text or as its ASCII bytes. */
export function decrypt(key: FernetKey | Buffer, token: string | Buffer, opts?: DecryptOptions): Buffer {
  const b = typeof token === 'string' ? Buffer.from(token, 'utf8') : token;
  return decryptRange(toKey(key), b, 0, b.length, opts);
}

/** Decrypts the token held as ASCII in src[start, end) — the envelope's last part, without copying it out. */
export function decryptRange(
  key: FernetKey,
  src: Buffer,
  start: number,
  end: number,
  opts?: DecryptOptions,
): Buffer {
  const data = decodeStrict(src, start, end, true);
  if (!data) throw new FernetError('bad_base64');
  if (data.length < HEADER + MAC) throw new FernetError('too_short');
  if (data[0] !== VERSION) throw new FernetError('bad_version');
  const macAt = data.length - MAC;
  if ((macAt - HEADER) % BLOCK !== 0) throw new FernetError('bad_length');
  if (macAt === HEADER) throw new FernetError('too_short'); // no ciphertext block at all

  key.macInto(data, 0, macAt, expected, 0);
  if (!timingSafeEqual(expected, data.subarray(macAt))) throw new FernetError('bad_mac');

  // Time checks only after the MAC: an 'expired' or 'future' verdict is then about an authentic token.
  if (opts?.ttlSeconds !== undefined) {
    const now = opts.now ?? Math.floor(Date.now() / 1000);
    const ts = data.readUInt32BE(1) * 0x1_0000_0000 + data.readUInt32BE(5);
    if (ts + opts.ttlSeconds < now) throw new FernetError('expired');
    if (ts > now + MAX_CLOCK_SKEW_SECONDS) throw new FernetError('future');
  }

  // PKCS7 is checked here rather than by OpenSSL.
  const padded = key.decryptBlocks(data.subarray(HEADER, macAt), data.subarray(9, HEADER));
  const pad = padded[padded.length - 1]!;
  let ok = pad >= 1 && pad <= BLOCK;
  for (let i = padded.length - pad; ok && i < padded.length - 1; i++) ok = padded[i] === pad;
  if (!ok) {
    padded.fill(0); // only a key holder can get here (the MAC passed); still leave no stray plaintext
    throw new FernetError('bad_padding');
  }
  return padded.subarray(0, padded.length - pad);
}

