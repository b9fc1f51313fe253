// A Transit ciphertext as the envelope holds it (docs/FORMAT.md §4): the KEK id
// is the key version N in ASCII, the wrapped bytes are `vault:v<N>:<base64>` as
// Vault returned it. Parsing and checks only; vault.ts makes the calls.
import { CMEKDecryptionError } from '../errors.js';
import { BackendTag, type WrappedDek } from './types.js';

const EMPTY = Buffer.alloc(0);
const CIPHERTEXT = /^vault:v([1-9]\d{0,9}):([A-Za-z0-9+/]+={0,2})$/;

/** `vault:vN:<base64>` -> its version; undefined for anything else. */
export function parseTransitCiphertext(s: unknown): { version: number; text: string } | undefined {
  if (typeof s !== 'string') return undefined;
  const m = CIPHERTEXT.exec(s);
  return m ? { version: Number(m[1]), text: s } : undefined;
}

/** The KEK id of a Vault-wrapped DEK is the key version in ASCII ("3"). */
export function parseVersionId(kekId: Buffer): number | undefined {
  const s = kekId.toString('latin1');
  return /^[1-9]\d{0,9}$/.test(s) ? Number(s) : undefined;
}

export function checkWrapped(w: WrappedDek): number {
  const v = parseVersionId(w.kekId);
  if (w.tag !== BackendTag.vault || v === undefined || w.wrapped.length === 0) {
    throw new CMEKDecryptionError('unknown_kek', { backend: 'vault', detail: 'not a Vault-wrapped DEK (KEK id must be a key version)' });
  }
  return v;
}

/** The Transit ciphertext a wrapped DEK holds; its version must be the KEK id (both are in the envelope). */
export function ciphertextOf(version: number, w: WrappedDek): string {
  const ct = parseTransitCiphertext(w.wrapped.toString('latin1'));
  if (!ct || ct.version !== version) {
    throw new CMEKDecryptionError('bad_format', { backend: 'vault', kekId: String(version), detail: `the wrapped DEK is not a vault:v${version}: Transit ciphertext` });
  }
  return ct.text;
}

export function wrappedOf(ct: { version: number; text: string }): WrappedDek {
  return { tag: BackendTag.vault, kekId: Buffer.from(String(ct.version), 'latin1'), nonce: EMPTY, wrapped: Buffer.from(ct.text, 'latin1') };
}
