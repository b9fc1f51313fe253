// The contract between the envelope and a KEK backend. A backend wraps and
// unwraps 32-byte DEKs; it never sees data. Every wrapped DEK names the backend
// (a one-byte tag) and the KEK that wrapped it (an opaque id), so a reader finds
// the right key without trying each one. docs/FORMAT.md has the bytes.

export const BackendTag = {
  local: 0x01,
  vault: 0x02,
  aws_kms: 0x03,
} as const;
export type BackendTagValue = (typeof BackendTag)[keyof typeof BackendTag];

/** A DEK wrapped by a backend: what goes into the envelope's first two parts. */
export interface WrappedDek {
  tag: BackendTagValue;
  /** Identifies the KEK (local: 8-byte HMAC id; vault: key version; kms: key ARN/id). */
  kekId: Buffer;
  /** The envelope's middle part: a nonce when the backend's wrapping needs one, else empty. */
  nonce: Buffer;
  /** The backend's wrapped bytes. */
  wrapped: Buffer;
}

export interface KekBackend {
  readonly name: 'local' | 'vault' | 'aws_kms';
  readonly tag: BackendTagValue;
  /** Checks the backend is usable (file present, remote reachable); called at startup. */
  init(): Promise<void>;
  /** Id of the KEK new DEKs are wrapped under. */
  primaryKekId(): Buffer;
  /** Whether this backend holds the KEK with that id (without a remote call). */
  hasKek(kekId: Buffer): boolean;
  /**
   * A fresh DEK and its wrapped form. Backends with a data-key API (KMS
   * GenerateDataKey, Vault datakey) generate it remotely; local generates it.
   * `aad` is the envelope header the wrapping must be bound to.
   */
  generateDek(): Promise<{ dek: Buffer; wrapped: WrappedDek }>;
  /** Wraps an existing DEK under the primary KEK (cross-backend rotation: local -> vault). */
  wrap(dek: Buffer): Promise<WrappedDek>;
  /** Unwraps; throws CMEKDecryptionError (reason 'unknown_kek' | 'unwrap_failed'). */
  unwrap(w: WrappedDek): Promise<Buffer>;
  /** Synchronous unwrap where the backend can do it locally (local backend), else undefined. */
  unwrapSync?(w: WrappedDek): Buffer;
  /** Synchronous generateDek where no remote call is needed (local backend); lets the proxy encrypt without awaiting. */
  generateDekSync?(): { dek: Buffer; wrapped: WrappedDek };
  /** Synchronous wrap where no remote call is needed (local backend). */
  wrapSync?(dek: Buffer): WrappedDek;
  /**
   * Re-wrap under the current primary KEK. Remote backends do this without the DEK
   * leaving the service (Transit rewrap, KMS ReEncrypt); local unwraps and wraps.
   */
  rewrap(w: WrappedDek): Promise<WrappedDek>;
  /** Re-reads which KEK version is current (Vault Transit: the key's latest version). */
  refresh?(): Promise<void>;
  close?(): Promise<void>;
}
