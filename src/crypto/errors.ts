// The two errors the crypto core raises. Neither ever carries key material,
// plaintext or the stored value: only a reason, a safe printable KEK id and a
// sentence saying what to do, so callers may log them and send them to clients.

export type DecryptionFailureReason =
  | 'bad_format'
  | 'bad_base64'
  | 'truncated'
  | 'unknown_backend'
  | 'unknown_kek'
  | 'unwrap_failed'
  | 'bad_mac'
  | 'bad_token'
  | 'backend_unavailable';

const SUMMARY: Record<DecryptionFailureReason, string> = {
  bad_format: 'the value has the cmek:v1: prefix but is not a well-formed envelope',
  bad_base64: 'a part of the envelope is not canonical base64url',
  truncated: 'the envelope is cut short',
  unknown_backend: 'the DEK was wrapped by a KEK backend this proxy is not configured with',
  unknown_kek: 'the DEK was wrapped by a KEK this proxy does not hold',
  unwrap_failed: 'the KEK backend refused to unwrap the DEK (altered envelope or wrong key)',
  bad_mac: 'the Fernet token does not authenticate under its DEK (altered value)',
  bad_token: 'the Fernet token is malformed',
  backend_unavailable: 'the KEK backend could not be reached',
};

export interface DecryptionErrorDetail {
  /** Extra safe text (never a value or key). */
  detail?: string;
  /** Backend name (local, vault, aws_kms) when known. */
  backend?: string;
  /** Printable KEK id (hex / version label / key ARN), never key bytes. */
  kekId?: string;
  cause?: unknown;
}

/** A stored value could not be decrypted. Never replaced by garbage output. */
export class CMEKDecryptionError extends Error {
  override readonly name = 'CMEKDecryptionError';
  readonly reason: DecryptionFailureReason;
  readonly backend?: string;
  readonly kekId?: string;

  constructor(reason: DecryptionFailureReason, info: DecryptionErrorDetail = {}) {
    const kek = info.kekId !== undefined ? ` [KEK ${info.backend ?? '?'}:${info.kekId}]` : '';
    const detail = info.detail ? `: ${info.detail}` : '';
    super(`CMEK decryption failed (${reason}): ${SUMMARY[reason]}${detail}${kek}`, { cause: info.cause });
    this.reason = reason;
    if (info.backend !== undefined) this.backend = info.backend;
    if (info.kekId !== undefined) this.kekId = info.kekId;
  }
}

/** The KEK configuration cannot work; the process refuses to start. One actionable line. */
export class KekConfigError extends Error {
  override readonly name = 'KekConfigError';
}
