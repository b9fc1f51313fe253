// Encrypting and decrypting one column value, as the wire carries it. A value
// is UTF-8 text (text/varchar, or a JSON document for json/jsonb), or in binary
// format the same bytes (jsonb's binary form adds a leading version byte 1).
// Sync whenever the keyring can work without a remote call; a Promise otherwise.
import type { ColumnPolicy } from '../config/types.js';
import { Keyring } from '../crypto/keyring.js';
import { encryptPathsSync, decryptPathsSync, encryptPaths, decryptPaths, wrapJsonString, unwrapJsonString, JsonPathError } from '../admin/json-paths.js';
import { JSON_OID, JSONB_OID } from '../catalog/column-types.js';
import type { SearchableColumnKey } from '../searchable/column-key.js';
import { ValueCache, type ValueCacheOptions } from './value-cache.js';

export type { ValueCacheOptions } from './value-cache.js';

export type MaybePromise<T> = T | Promise<T>;

/** How a configured column holds its envelope. */
export type ValueShape = 'text' | 'json' | 'jsonb';

export function shapeOf(baseTypeOid: number): ValueShape {
  if (baseTypeOid === JSONB_OID) return 'jsonb';
  if (baseTypeOid === JSON_OID) return 'json';
  return 'text';
}

const JSONB_VERSION = 1;

/**
 * A value bound for a configured column is not what the column holds (a
 * document that is not JSON where `json_paths` must find strings in it; an
 * unknown jsonb binary version), so it cannot be encrypted. Postgres would
 * refuse it too (22P02); the message never contains the value.
 */
export class ValueFormatError extends Error {
  override readonly name = 'ValueFormatError';
}

function asFormatError(e: unknown): unknown {
  return e instanceof JsonPathError ? new ValueFormatError(`the value is not valid JSON (${e.message})`) : e;
}

export class ValueCodec {
  private readonly cache: ValueCache | undefined;

  constructor(
    readonly keyring: Keyring,
    cache?: ValueCacheOptions,
  ) {
    if (cache && cache.size > 0) this.cache = new ValueCache(cache);
  }

  /** Forget every cached plaintext (config reload, shutdown). */
  clearCache(): void {
    this.cache?.clear();
  }

  /** Encrypts a plaintext value bound for a configured column. Null stays null; empty stays empty unless encrypt_empty. */
  encrypt(value: Buffer, policy: ColumnPolicy, shape: ValueShape, binary: boolean): MaybePromise<Buffer> {
    if (shape === 'text') return this.encryptText(value, policy);
    // json / jsonb: the document is text after the optional jsonb version byte.
    const head = shape === 'jsonb' && binary ? 1 : 0;
    if (head && value[0] !== JSONB_VERSION) throw new ValueFormatError(`unsupported jsonb binary format version ${value[0] ?? '(empty value)'}`);
    const doc = value.subarray(head).toString('utf8');
    const out = this.encryptJsonDoc(doc, policy);
    const finish = (d: string): Buffer => (head ? Buffer.concat([Buffer.from([JSONB_VERSION]), Buffer.from(d, 'utf8')]) : Buffer.from(d, 'utf8'));
    return typeof out === 'string' ? finish(out) : out.then(finish);
  }

  /** Decrypts a value read from a configured column; legacy plaintext comes back as the same Buffer. */
  decrypt(value: Buffer, policy: ColumnPolicy, shape: ValueShape, binary: boolean): MaybePromise<Buffer> {
    if (shape === 'text') return this.decryptText(value);
    const head = shape === 'jsonb' && binary ? 1 : 0;
    const doc = value.subarray(head).toString('utf8');
    if (!doc.includes('cmek:v1:')) return value;
    const out = this.decryptJsonDoc(doc, policy);
    const finish = (d: string): Buffer => (head ? Buffer.concat([value.subarray(0, 1), Buffer.from(d, 'utf8')]) : Buffer.from(d, 'utf8'));
    return typeof out === 'string' ? finish(out) : out.then(finish);
  }

  encryptText(value: Buffer, policy: ColumnPolicy): MaybePromise<Buffer> {
    if (value.length === 0 && !policy.encryptEmpty) return value;
    if (Keyring.isEncrypted(value)) return value; // already an envelope (copied between encrypted columns)
    return this.keyring.tryEncryptSync(value) ?? this.keyring.encryptBytes(value);
  }

  /**
   * A searchable column's value: deterministic under the column's key, so equal
   * plaintexts are equal strings (lookups, unique indexes). Synchronous: no KEK
   * call. A value already under this key is kept (written back unchanged).
   */
  encryptSearchable(value: Buffer, key: SearchableColumnKey): Buffer {
    if (Keyring.isEncrypted(value) && key.group.wrappingOf(value)) return value;
    return key.encrypt(value);
  }

  /**
   * Where the cached plaintext of the text field frame[start, end) is, as an
   * offset into cachedBytes() (its length: cachedLength()); -1 when it is not
   * cached. The hot read path: nothing is allocated. Valid until the next call
   * into this codec. `_policy` names the column (CountingCodec counts by it).
   */
  cachedAt(frame: Buffer, start: number, end: number, _policy: ColumnPolicy): number {
    return this.cache === undefined ? -1 : this.cache.find(frame, start, end);
  }

  /** The buffer cachedAt()'s offsets point into. */
  cachedBytes(): Buffer {
    return this.cache!.bytes();
  }

  cachedLength(): number {
    return this.cache!.foundLength;
  }

  /**
   * decryptText of the text field frame[start, end) that starts with the
   * envelope prefix; undefined when it stays as it is. A cached value is found
   * in place: no Buffer of the field is made unless it must be decrypted.
   * A cached plaintext comes back as a view of the cache, valid only until
   * the next call into this codec: copy it to keep it longer.
   */
  decryptTextAt(frame: Buffer, start: number, end: number, _policy: ColumnPolicy): MaybePromise<Buffer> | undefined {
    const hit = this.cache?.getAt(frame, start, end);
    if (hit) return hit;
    const value = frame.subarray(start, end);
    const r = this.decryptText(value);
    return r === value ? undefined : r;
  }

  decryptText(value: Buffer): MaybePromise<Buffer> {
    if (!Keyring.isEncrypted(value)) return value;
    const cache = this.cache;
    if (!cache) return this.keyring.tryDecryptSync(value) ?? this.keyring.decryptBytes(value);
    const hit = cache.getAt(value, 0, value.length);
    if (hit) return Buffer.from(hit); // a copy: the cache's view changes with its next entry
    const pt = this.keyring.tryDecryptSync(value);
    if (pt) {
      cache.set(value, pt);
      return pt;
    }
    return this.keyring.decryptBytes(value).then((b) => {
      cache.set(value, b);
      return b;
    });
  }

  private encryptJsonDoc(doc: string, policy: ColumnPolicy): MaybePromise<string> {
    const paths = policy.jsonPaths;
    if (!paths) {
      // Whole document: stored as a JSON string holding the envelope of the document text.
      if (unwrapJsonString(doc) !== undefined) return doc;
      const env = this.encryptText(Buffer.from(doc, 'utf8'), { ...policy, encryptEmpty: true });
      return env instanceof Promise ? env.then((e) => wrapJsonString(e.toString('latin1'))) : wrapJsonString(env.toString('latin1'));
    }
    const opts = { encryptEmpty: policy.encryptEmpty };
    try {
      return encryptPathsSync(doc, paths, (s) => {
        const r = this.keyring.tryEncryptSync(Buffer.from(s, 'utf8'));
        if (!r) throw NEEDS_ASYNC;
        return r.toString('latin1');
      }, opts);
    } catch (e) {
      if (e !== NEEDS_ASYNC) throw asFormatError(e);
      return encryptPaths(doc, paths, (s) => this.keyring.encrypt(s), opts).catch((err: unknown) => {
        throw asFormatError(err);
      });
    }
  }

  private decryptJsonDoc(doc: string, policy: ColumnPolicy): MaybePromise<string> {
    const paths = policy.jsonPaths;
    if (!paths) {
      const env = unwrapJsonString(doc);
      if (env === undefined) return doc;
      const pt = this.decryptText(Buffer.from(env, 'latin1'));
      return pt instanceof Promise ? pt.then((b) => b.toString('utf8')) : pt.toString('utf8');
    }
    try {
      return decryptPathsSync(doc, paths, (s) => {
        const r = this.keyring.tryDecryptSync(Buffer.from(s, 'latin1'));
        if (!r) throw NEEDS_ASYNC;
        return r.toString('utf8');
      });
    } catch (e) {
      if (e !== NEEDS_ASYNC) throw e;
      return decryptPaths(doc, paths, (s) => this.keyring.decrypt(s));
    }
  }
}

/** Thrown inside a sync path to fall back to the async one (a remote KEK call is needed). */
const NEEDS_ASYNC = Symbol('needs-async');
