// The value codec the proxy uses when it runs as a service: the plain one, plus
// per-column counts of values encrypted and decrypted and of failures by reason.
// Every value of a configured column goes through encrypt/encryptSearchable/
// decrypt/decryptTextAt/cachedAt here, so this is the one place that sees them all (Bind, literals,
// COPY, DataRow, COPY TO); the cost is one WeakMap lookup next to an AES+HMAC.
// A searchable column's lookup candidates are not writes and are not counted.
import type { ColumnPolicy } from '../config/types.js';
import { CMEKDecryptionError } from '../crypto/errors.js';
import { RemoteKekError } from '../crypto/kek/retry.js';
import type { Keyring } from '../crypto/keyring.js';
import { ValueCodec, type MaybePromise, type ValueCacheOptions, type ValueShape } from '../encryption/values.js';
import type { SearchableColumnKey } from '../searchable/column-key.js';
import { bump, type ColumnCounts, type ProxyStats } from './stats.js';

/** A failure's label: the decryption reason, or what kind of thing broke (never its message). */
export function failureReason(e: unknown): string {
  if (e instanceof CMEKDecryptionError) return e.reason;
  if (e instanceof RemoteKekError) return 'backend_unavailable';
  return e instanceof Error && e.name !== 'Error' ? e.name : 'internal';
}

export class CountingCodec extends ValueCodec {
  /** A searchable column's counts, by its key handle (the handle names the column, not its policy object). */
  private readonly byKey = new WeakMap<SearchableColumnKey, ColumnCounts>();

  constructor(
    keyring: Keyring,
    private readonly stats: ProxyStats,
    cache?: ValueCacheOptions,
  ) {
    super(keyring, cache);
  }

  override encrypt(value: Buffer, policy: ColumnPolicy, shape: ValueShape, binary: boolean): MaybePromise<Buffer> {
    const counts = this.stats.column(policy);
    const failed = (e: unknown): never => {
      bump(this.stats.encryptFailures, failureReason(e));
      throw e;
    };
    let r: MaybePromise<Buffer>;
    try {
      r = super.encrypt(value, policy, shape, binary);
    } catch (e) {
      return failed(e);
    }
    if (r instanceof Promise) {
      return r.then((b) => {
        if (b !== value) counts.encrypted++;
        return b;
      }, failed);
    }
    // The same Buffer back: nothing was encrypted (an empty string kept as is, or already an envelope).
    if (r !== value) counts.encrypted++;
    return r;
  }

  /** A searchable column's deterministic write, counted with the column's other encryptions. */
  override encryptSearchable(value: Buffer, key: SearchableColumnKey): Buffer {
    let r: Buffer;
    try {
      r = super.encryptSearchable(value, key);
    } catch (e) {
      bump(this.stats.encryptFailures, failureReason(e));
      throw e;
    }
    // The same Buffer back: nothing was encrypted (an empty string kept, or already under this key).
    if (r !== value) this.searchableCounts(key).encrypted++;
    return r;
  }

  private searchableCounts(key: SearchableColumnKey): ColumnCounts {
    let c = this.byKey.get(key);
    if (!c) {
      const { schema, table, column } = key.column;
      const label = `${schema}.${table}.${column}`;
      c = this.stats.columns.get(label);
      if (!c) this.stats.columns.set(label, (c = { encrypted: 0, decrypted: 0 }));
      this.byKey.set(key, c);
    }
    return c;
  }

  override decrypt(value: Buffer, policy: ColumnPolicy, shape: ValueShape, binary: boolean): MaybePromise<Buffer> {
    const counts = this.stats.column(policy);
    const failed = (e: unknown): never => {
      bump(this.stats.decryptFailures, failureReason(e));
      throw e;
    };
    let r: MaybePromise<Buffer>;
    try {
      r = super.decrypt(value, policy, shape, binary);
    } catch (e) {
      return failed(e);
    }
    if (r instanceof Promise) {
      return r.then((b) => {
        if (b !== value) counts.decrypted++;
        return b;
      }, failed);
    }
    // The same Buffer back: legacy plaintext, passed through.
    if (r !== value) counts.decrypted++;
    return r;
  }

  /** A cached text field of a DataRow: a decryption served from memory. */
  override cachedAt(frame: Buffer, start: number, end: number, policy: ColumnPolicy): number {
    const at = super.cachedAt(frame, start, end, policy);
    if (at >= 0) this.stats.column(policy).decrypted++;
    return at;
  }

  /** A text field of a DataRow, decrypted in place (undefined: legacy plaintext, not a decryption). */
  override decryptTextAt(frame: Buffer, start: number, end: number, policy: ColumnPolicy): MaybePromise<Buffer> | undefined {
    const counts = this.stats.column(policy);
    const failed = (e: unknown): never => {
      bump(this.stats.decryptFailures, failureReason(e));
      throw e;
    };
    let r: MaybePromise<Buffer> | undefined;
    try {
      r = super.decryptTextAt(frame, start, end, policy);
    } catch (e) {
      return failed(e);
    }
    if (r === undefined) return undefined;
    if (r instanceof Promise) {
      return r.then((b) => {
        counts.decrypted++;
        return b;
      }, failed);
    }
    counts.decrypted++;
    return r;
  }
}
