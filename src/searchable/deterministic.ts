// Deterministic Fernet: the token becomes a function of (column DEK, plaintext)
// alone, so equal plaintexts give equal stored strings and equality on the
// column keeps working. The token layout is standard Fernet (docs/FORMAT.md §6):
//   iv        = HMAC-SHA256(iv_key, plaintext)[0..16]      (a synthetic IV, as in SIV)
//   iv_key    = HKDF-SHA256(ikm = DEK, salt = "", info = "cmek-searchable-iv", 32)
//   timestamp = 0
// The IV is a PRF of the plaintext under a key independent of Fernet's two
// halves, so two different plaintexts get unrelated IVs: unlike a fixed IV,
// CBC then leaks nothing about shared prefixes, only whole-value equality.
import { hkdfSync } from 'node:crypto';
import { encodePadded, paddedLength, writePadded } from '../crypto/base64url.js';
import { encryptRaw, FernetKey, rawTokenLength } from '../crypto/fernet.js';
import { HMAC_BYTES, HmacSha256Key } from '../crypto/hmac-sha256.js';

export const IV_INFO = 'cmek-searchable-iv';
export const CHECK_INFO = 'cmek-searchable-check';
/** Every searchable token carries this timestamp (pgcmek never applies a TTL to stored values). */
export const SEARCHABLE_TIMESTAMP = 0;
export const DEK_BYTES = 32;
const EMPTY = Buffer.alloc(0);
const BLOCK = 16;
/** Version, timestamp, IV, and the MAC: a token's bytes around its cipher blocks. */
const OVERHEAD = 1 + 8 + BLOCK + 32;

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

/** Characters of the token text of a plaintext of `n` bytes (PKCS7 always adds 1–16 bytes). */
export function tokenTextLength(n: number): number {
  return paddedLength(OVERHEAD + ((n >>> 4) + 1) * BLOCK);
}

/** A column DEK ready for deterministic encryption. Own copies; `destroy()` zeroes them. */
export class DeterministicKey {
  readonly fernet: FernetKey;
  readonly check: Buffer;
  private readonly ivKey: Buffer;
  /** HMAC under iv_key with its pad states precomputed (src/crypto/hmac-sha256.ts). */
  private readonly ivMac: HmacSha256Key;
  /** The IV HMAC's output; the IV is its first half. Reused: nothing here awaits. */
  private readonly ivOut = Buffer.alloc(HMAC_BYTES);
  private readonly ivView = this.ivOut.subarray(0, BLOCK);
  /** Where writeToken() builds a raw token (public bytes: the token itself), grown as plaintexts need. */
  private scratch = Buffer.alloc(128);

  constructor(dek: Buffer) {
    if (dek.length !== DEK_BYTES) throw new RangeError(`a column DEK is ${DEK_BYTES} bytes, got ${dek.length}`);
    this.fernet = new FernetKey(dek);
    this.ivKey = hkdf(dek, IV_INFO, 32);
    this.ivMac = new HmacSha256Key(this.ivKey);
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
    this.ivMac.macInto(plaintext, 0, plaintext.length, this.ivOut, 0);
    const iv = Buffer.from(this.ivView);
    this.ivOut.fill(0);
    return iv;
  }

  /**
   * The token's bytes: standard Fernet (version, timestamp 0, IV, AES-128-CBC
   * with PKCS7, HMAC-SHA256) through the ordinary Fernet code with the IV and
   * time fixed. Every MAC runs over precomputed pad states, and the CBC pass
   * over the Fernet key's reused cipher.
   */
  raw(plaintext: Buffer): Buffer {
    this.ivMac.macInto(plaintext, 0, plaintext.length, this.ivOut, 0);
    const raw = encryptRaw(this.fernet, plaintext, { iv: this.ivView, timestamp: SEARCHABLE_TIMESTAMP });
    this.ivOut.fill(0);
    return raw;
  }

  /**
   * Writes the token text (padded base64url) at out[at], which must have
   * `tokenTextLength(plaintext.length)` bytes of room; returns the end offset.
   */
  writeToken(plaintext: Buffer, out: Buffer, at: number): number {
    const len = rawTokenLength(plaintext.length);
    // With the addon: the raw token into a reused buffer in one call, then its text.
    if (this.scratch.length < len) this.scratch = Buffer.alloc(Math.max(len, 2 * this.scratch.length));
    let raw: Buffer;
    try {
      this.ivMac.macInto(plaintext, 0, plaintext.length, this.ivOut, 0);
      const sealed = this.fernet.sealNative(plaintext, 0, plaintext.length, this.ivOut, 0, SEARCHABLE_TIMESTAMP, this.scratch, 0);
      // Without the addon, the JavaScript path under the IV just computed.
      raw = sealed ? this.scratch : encryptRaw(this.fernet, plaintext, { iv: this.ivView, timestamp: SEARCHABLE_TIMESTAMP });
    } finally {
      this.ivOut.fill(0);
    }
    return writePadded(raw, 0, len, out, at);
  }

  /** The Fernet token (padded base64url text) for this plaintext: always the same string. */
  token(plaintext: Buffer): string {
    return encodePadded(this.raw(plaintext));
  }

  destroy(): void {
    this.scratch.fill(0);
    this.fernet.destroy();
    this.ivKey.fill(0);
    this.ivOut.fill(0);
    this.ivMac.destroy();
  }
}
