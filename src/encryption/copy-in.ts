// COPY ... FROM STDIN in text or CSV format: encrypts the secret fields of the rows
// a client streams, with the row rewriter COPY TO shares (copy-row-rewriter.ts).
import { assertValidText } from './copy-fields.js';
import { resolveCopyFormat, type CopyFormat } from './copy-format.js';
import type { CopyOutput } from './copy-output.js';
import { CopyRowRewriter } from './copy-row-rewriter.js';

export interface CopyInOptions {
  format: CopyFormat;
  /** Indexes (in the COPY column list) of the fields to encrypt. */
  fields: Iterable<number>;
  /** Plaintext → stored text (`cmek:v1:...`). The value may be a view: copy it to keep it. */
  transform: (plaintext: Buffer, field: number) => Buffer | Promise<Buffer>;
  /** Encrypt empty strings too: for every field (true) or these indexes. Default: empty stays empty. */
  encryptEmpty?: boolean | Iterable<number>;
  maxRowBytes?: number;
}

/**
 * Encrypts fields of COPY FROM STDIN data (text/CSV, UTF-8). Feed it each CopyData
 * payload with push() and forward what it returns, in order; call end() on CopyDone
 * and forward that before the CopyDone. NULL, DEFAULT and (unless encryptEmpty)
 * empty values stay as they are.
 */
export class CopyInEncryptor {
  private readonly rows: CopyRowRewriter;

  constructor(opts: CopyInOptions) {
    const { encryptEmpty = false } = opts;
    const emptyOk =
      typeof encryptEmpty === 'boolean' ? () => encryptEmpty : ((s: Set<number>) => (i: number) => s.has(i))(new Set(encryptEmpty));
    this.rows = new CopyRowRewriter(resolveCopyFormat(opts.format), {
      fields: opts.fields,
      direction: 'in',
      maxRowBytes: opts.maxRowBytes,
      rewrite: (value, i) => {
        if (value.length === 0 && !emptyOk(i)) return undefined;
        assertValidText(value);
        return opts.transform(value, i);
      },
    });
  }

  push(chunk: Buffer): CopyOutput {
    return this.rows.push(chunk);
  }

  end(): CopyOutput {
    return this.rows.end();
  }
}
