// The stored value, byte for byte (docs/FORMAT.md):
//   cmek:v1: base64url(wrapped_dek) | base64url(nonce) | fernet_token
//   wrapped_dek = tag(1) | kek_id_len(1) | kek_id | backend_wrapped
// Parsing is strict: a value with the prefix that is anything but a
// well-formed envelope is a CMEKDecryptionError, never passed through.
import { decodeStrict, encodeUnpadded } from './base64url.js';
import { CMEKDecryptionError } from './errors.js';
import { BackendTag, type BackendTagValue, type WrappedDek } from './kek/types.js';

export const PREFIX = 'cmek:v1:';
const PREFIX_BYTES = Buffer.from(PREFIX, 'latin1');
const PREFIX_LEN = PREFIX_BYTES.length;
const SEP = 0x7c; // '|'

const NAMES: Record<number, WrappedDekBackend> = {
  [BackendTag.local]: 'local',
  [BackendTag.vault]: 'vault',
  [BackendTag.aws_kms]: 'aws_kms',
};
export type WrappedDekBackend = 'local' | 'vault' | 'aws_kms';

export function isEnvelope(v: string | Buffer): boolean {
  if (typeof v === 'string') return v.startsWith(PREFIX);
  return hasPrefixAt(v, 0, v.length);
}

/**
 * True when src[start, end) starts with `cmek:v1:`. Compared byte by byte in
 * JS: on every value read, a view plus a native compare cost more than the check.
 */
export function hasPrefixAt(src: Uint8Array, start: number, end: number): boolean {
  if (end - start < PREFIX_LEN) return false;
  for (let i = 0; i < PREFIX_LEN; i++) if (src[start + i] !== PREFIX_BYTES[i]) return false;
  return true;
}

/** Where an envelope's parts are: [8, bar1) wrapped DEK, (bar1, bar2) nonce, (bar2, end) token. */
export interface EnvelopeLayout {
  bar1: number;
  bar2: number;
}

/** Finds the separators of a value already known to carry the prefix. */
export function locate(v: Buffer): EnvelopeLayout {
  const bar1 = v.indexOf(SEP, PREFIX_LEN);
  const bar2 = bar1 < 0 ? -1 : v.indexOf(SEP, bar1 + 1);
  if (bar2 < 0) throw new CMEKDecryptionError('bad_format', { detail: 'expected three |-separated parts' });
  if (v.indexOf(SEP, bar2 + 1) >= 0) {
    throw new CMEKDecryptionError('bad_format', { detail: 'more than three |-separated parts' });
  }
  return { bar1, bar2 };
}

/**
 * The envelope's first two parts as text: one string per wrapped DEK, used as
 * the DEK cache key so a cache hit needs no base64 decoding at all.
 */
export function headerKey(v: Buffer, at: EnvelopeLayout): string {
  return v.toString('latin1', PREFIX_LEN, at.bar2);
}

/** Decodes the first two parts into a WrappedDek. */
export function decodeHeader(v: Buffer, at: EnvelopeLayout): WrappedDek {
  const raw = decodeStrict(v, PREFIX_LEN, at.bar1, false);
  if (!raw) throw new CMEKDecryptionError('bad_base64', { detail: 'wrapped DEK part' });
  const nonce = decodeStrict(v, at.bar1 + 1, at.bar2, false);
  if (!nonce) throw new CMEKDecryptionError('bad_base64', { detail: 'nonce part' });
  return parseWrappedDek(raw, nonce);
}

/** tag | kek_id_len | kek_id | wrapped -> WrappedDek (copies, so callers may keep it). */
export function parseWrappedDek(raw: Buffer, nonce: Buffer): WrappedDek {
  if (raw.length < 2) throw new CMEKDecryptionError('truncated', { detail: 'wrapped DEK shorter than its header' });
  const tag = raw[0]!;
  if (!(tag in NAMES)) {
    throw new CMEKDecryptionError('unknown_backend', { detail: `backend tag 0x${tag.toString(16).padStart(2, '0')}` });
  }
  const idLen = raw[1]!;
  if (idLen === 0) throw new CMEKDecryptionError('bad_format', { detail: 'empty KEK id' });
  if (raw.length <= 2 + idLen) throw new CMEKDecryptionError('truncated', { detail: 'wrapped DEK cut short' });
  return {
    tag: tag as BackendTagValue,
    kekId: Buffer.from(raw.subarray(2, 2 + idLen)),
    nonce: Buffer.from(nonce),
    wrapped: Buffer.from(raw.subarray(2 + idLen)),
  };
}

/** The wrapped DEK's header (tag | kek_id_len | kek_id): the AAD a backend binds its wrapping to. */
export function wrappedDekHeader(tag: BackendTagValue, kekId: Buffer): Buffer {
  if (kekId.length < 1 || kekId.length > 255) throw new RangeError(`KEK id must be 1..255 bytes, got ${kekId.length}`);
  const h = Buffer.alloc(2 + kekId.length);
  h[0] = tag;
  h[1] = kekId.length;
  kekId.copy(h, 2);
  return h;
}

export function encodeWrappedDek(w: WrappedDek): Buffer {
  return Buffer.concat([wrappedDekHeader(w.tag, w.kekId), w.wrapped]);
}

/** Everything before the token: `cmek:v1:<wrapped_dek>|<nonce>|`. Computed once per DEK. */
export function formatHeader(w: WrappedDek): string {
  return `${PREFIX}${encodeUnpadded(encodeWrappedDek(w))}|${encodeUnpadded(w.nonce)}|`;
}

export function formatEnvelope(w: WrappedDek, token: string): string {
  return formatHeader(w) + token;
}

/** Full parse of a value with the prefix (reporting, rewrap, tests). The token is not verified. */
export function parseEnvelope(value: string | Buffer): { wrapped: WrappedDek; token: string } {
  const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  if (!isEnvelope(v)) throw new CMEKDecryptionError('bad_format', { detail: `missing ${PREFIX} prefix` });
  const at = locate(v);
  return { wrapped: decodeHeader(v, at), token: v.toString('latin1', at.bar2 + 1) };
}

export function backendName(tag: BackendTagValue): WrappedDekBackend {
  return NAMES[tag]!;
}

/**
 * A KEK id as safe printable text: hex for local ids (HMAC bytes); the ASCII
 * label for Vault versions and KMS key ids, hex-prefixed if not printable.
 */
export function kekIdLabel(tag: BackendTagValue, kekId: Buffer): string {
  if (tag === BackendTag.local) return kekId.toString('hex');
  for (const c of kekId) if (c < 0x20 || c > 0x7e) return `hex:${kekId.toString('hex')}`;
  return kekId.toString('latin1');
}
