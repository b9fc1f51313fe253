// Deterministic Fernet: the token becomes a function of (column DEK, plaintext)
// alone, so equal plaintexts give equal stored strings and equality on the
// column keeps working. The token layout is standard Fernet (docs/FORMAT.md §6):
//   iv        = HMAC-SHA256(iv_key, plaintext)[0..16]      (a synthetic IV, as in SIV)
//   iv_key    = HKDF-SHA256(ikm = DEK, salt = "", info = "cmek-searchable-iv", 32)
//   timestamp = 0
// The IV is a PRF of the plaintext under a key independent of Fernet's two
// halves, so two different plaintexts get unrelated IVs: unlike a fixed IV,
// CBC then leaks nothing about shared prefixes, only whole-value equality.
import { createHmac, hkdfSync } from 'node:crypto';
import { encodePadded } from '../crypto/base64url.js';
import { encryptRaw, FernetKey } from '../crypto/fernet.js';

export const IV_INFO = 'cmek-searchable-iv';
export const CHECK_INFO = 'cmek-searchable-check';
/** Every searchable token carries this timestamp (pgcmek never applies a TTL to stored values). */
export const SEARCHABLE_TIMESTAMP = 0;
export const DEK_BYTES = 32;
const EMPTY = Buffer.alloc(0);

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

  constructor(dek: Buffer) {
    if (dek.length !== DEK_BYTES) throw new RangeError(`a column DEK is ${DEK_BYTES} bytes, got ${dek.length}`);
    this.fernet = new FernetKey(dek);
    this.ivKey = hkdf(dek, IV_INFO, 32);
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
    return createHmac('sha256', this.ivKey).update(plaintext).digest().subarray(0, 16);
  }

  /** The Fernet token (padded base64url text) for this plaintext: always the same string. */
  token(plaintext: Buffer): string {
    return encodePadded(encryptRaw(this.fernet, plaintext, { iv: this.iv(plaintext), timestamp: SEARCHABLE_TIMESTAMP }));
  }

  destroy(): void {
    this.fernet.destroy();
    this.ivKey.fill(0);
  }
}
