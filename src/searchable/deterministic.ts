// Deterministic Fernet: the token becomes a function of (column DEK, plaintext)
// alone, so equal plaintexts give equal stored strings and equality on the
// column keeps working. The token layout is standard Fernet (docs/FORMAT.md §6):
//   iv        = HMAC-SHA256(iv_key, plaintext)[0..16]      (a synthetic IV, as in SIV)
//   iv_key    = HKDF-SHA256(ikm = DEK, salt = "", info = "cmek-searchable-iv", 32)
//   timestamp = 0
// The IV is a PRF of the plaintext under a key independent of Fernet's two
// halves, so two different plaintexts get unrelated IVs: unlike a fixed IV,
// CBC then leaks nothing about shared prefixes, only whole-value equality.
import { createCipheriv, hkdfSync, type Cipher } from 'node:crypto';
import { encodePadded } from '../crypto/base64url.js';
import { FernetKey } from '../crypto/fernet.js';
import { HmacSha256 } from './hmac.js';

export const IV_INFO = 'cmek-searchable-iv';
export const CHECK_INFO = 'cmek-searchable-check';
/** Every searchable token carries this timestamp (pgcmek never applies a TTL to stored values). */
export const SEARCHABLE_TIMESTAMP = 0;
export const DEK_BYTES = 32;
const EMPTY = Buffer.alloc(0);
const VERSION = 0x80;
const BLOCK = 16;
const HEADER = 1 + 8 + BLOCK; // version, timestamp, IV
const MAC = 32;

/** AES-128-ECB without padding: it keeps no state between whole-block update() calls, so one serves every value. */
function ecbCipher(key: Buffer): Cipher {
  const c = createCipheriv('aes-128-ecb', key, null);
  c.setAutoPadding(false);
  return c;
}

function hkdf(dek: Buffer, info: string, length: number): Buffer {
  return Buffer.from(hkdfSync('sha256', dek, EMPTY, info, length));
}

/**
 * A public fingerprint of a column DEK, stored next to its wrappings: every
 * wrapping of one key must unwrap to the DEK with this fingerprint, which is
 * how replicas prove they converged on ONE DEK. HKDF output: says nothing about the DEK.
 */
export function dekCheck(dek: Buffer): Buffer {
  return hkdf(dek, CHECK_INFO, 16);
}

/** A column DEK ready for deterministic encryption. Own copies; `destroy()` zeroes them. */
export class DeterministicKey {
  readonly fernet: FernetKey;
  readonly check: Buffer;
  private readonly ivKey: Buffer;
  private readonly ivMac: HmacSha256;
  private readonly tagMac: HmacSha256;

  constructor(dek: Buffer) {
    if (dek.length !== DEK_BYTES) throw new RangeError(`a column DEK is ${DEK_BYTES} bytes, got ${dek.length}`);
    this.fernet = new FernetKey(dek);
    this.ivKey = hkdf(dek, IV_INFO, 32);
    this.ivMac = new HmacSha256(this.ivKey);
    this.tagMac = new HmacSha256(this.fernet.signingKey);
    this.check = dekCheck(dek);
  }

  /** True when `dek` is this key (compares fingerprints, so no key bytes are compared directly). */
  matches(dek: Buffer): boolean {
    return dekCheck(dek).equals(this.check);
  }

  /** A fresh copy of the raw DEK (to wrap it under another KEK); the caller zeroes it. */
  dek(): Buffer {
    return Buffer.concat([this.fernet.signingKey, this.fernet.encryptionKey]);
  }

  iv(plaintext: Buffer): Buffer {
    return this.ivMac.digest(plaintext).subarray(0, 16);
  }

  /**
   * The Fernet token (padded base64url text) for this plaintext: always the same
   * string. Standard Fernet (version, timestamp 0, IV, AES-128-CBC with PKCS7,
   * HMAC-SHA256), with CBC chained in JS over one reused ECB cipher and the
   * HMACs over precomputed pads (hmac.ts): creating a cipher and two Hmac
   * objects per value was most of the cost of a lookup's candidates.
   */
  token(plaintext: Buffer): string {
    const n = (plaintext.length >>> 4) + 1;
    const out = Buffer.allocUnsafe(HEADER + n * BLOCK + MAC);
    out[0] = VERSION;
    out.fill(0, 1, 9); // SEARCHABLE_TIMESTAMP
    this.iv(plaintext).copy(out, 9);
    const ecb = (this.ecb ??= ecbCipher(this.fernet.encryptionKey));
    const pad = n * BLOCK - plaintext.length;
    const block = Buffer.allocUnsafe(BLOCK);
    for (let b = 0, at = HEADER; b < n; b++, at += BLOCK) {
      const from = b * BLOCK;
      for (let i = 0; i < BLOCK; i++) {
        const j = from + i;
        block[i] = (j < plaintext.length ? plaintext[j]! : pad) ^ out[at - BLOCK + i]!;
      }
      ecb.update(block).copy(out, at);
    }
    block.fill(0);
    this.tagMac.digest(out.subarray(0, HEADER + n * BLOCK)).copy(out, HEADER + n * BLOCK);
    return encodePadded(out);
  }

  private ecb: Cipher | undefined;

  destroy(): void {
    this.fernet.destroy();
    this.ivKey.fill(0);
    this.ivMac.destroy();
    this.tagMac.destroy();
    // OpenSSL's copy of the key schedule goes with the object (it cannot be zeroed from JS).
    this.ecb = undefined;
  }
}
