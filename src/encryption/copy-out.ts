// COPY ... TO STDOUT in text or CSV format: decrypts the secret fields of the rows
// the server streams. Postgres sends one CopyData per row (copyto.c
// CopySendEndOfRow), but the shared row rewriter does not rely on it: a row split
// across messages is held until it is complete. Decrypted values are escaped or
// quoted exactly as COPY TO writes a plaintext value, so the client sees the bytes
// it would see without encryption. NULL and legacy plaintext pass untouched.
import type { CopyOutput } from './copy-output.js';
import { CopyRowRewriter } from './copy-row-rewriter.js';
import { resolveCopyFormat, type CopyFormat } from './copy-format.js';

export const CIPHERTEXT_PREFIX = Buffer.from('cmek:v1:', 'latin1');

export interface CopyOutOptions {
  format: CopyFormat;
  /** Indexes (in the COPY column list, or the query's output columns) of the fields to decrypt. */
  fields: Iterable<number>;
  /** Stored text → plaintext. Throw (CMEKDecryptionError) rather than return garbage. */
  transform: (ciphertext: Buffer, field: number) => Buffer | Promise<Buffer>;
  /** Which values to hand to transform; default: those starting with `cmek:v1:`. */
  isEncrypted?: (value: Buffer, field: number) => boolean;
  maxRowBytes?: number;
}

function hasPrefix(value: Buffer): boolean {
  return value.length >= CIPHERTEXT_PREFIX.length && CIPHERTEXT_PREFIX.equals(value.subarray(0, CIPHERTEXT_PREFIX.length));
}

/**
 * Decrypts fields of COPY TO STDOUT data (text/CSV, UTF-8). Feed it each server
 * CopyData payload with push() and forward what it returns, in order; call end() on
 * the server's CopyDone and forward that before the CopyDone.
 */
export class CopyOutDecryptor {
  private readonly rows: CopyRowRewriter;

  constructor(opts: CopyOutOptions) {
    const isEncrypted = opts.isEncrypted ?? hasPrefix;
    this.rows = new CopyRowRewriter(resolveCopyFormat(opts.format), {
      fields: opts.fields,
      direction: 'out',
      maxRowBytes: opts.maxRowBytes,
      rewrite: (value, i) => (isEncrypted(value, i) ? opts.transform(value, i) : undefined),
    });
  }

  push(payload: Buffer): CopyOutput {
    return this.rows.push(payload);
  }

  end(): CopyOutput {
    return this.rows.end();
  }
}
