// Encrypting and decrypting one column value, as the wire carries it. A value
// is UTF-8 text (text/varchar, or a JSON document for json/jsonb), or in binary
// format the same bytes (jsonb's binary form adds a leading version byte 1).
// Sync whenever the keyring can work without a remote call; a Promise otherwise.
import type { ColumnPolicy } from '../config/types.js';
import { Keyring } from '../crypto/keyring.js';
import { CMEKDecryptionError } from '../crypto/errors.js';
import { encryptPathsSync, decryptPathsSync, encryptPaths, decryptPaths, wrapJsonString, unwrapJsonString } from '../admin/json-paths.js';
import { JSON_OID, JSONB_OID } from '../catalog/column-types.js';
import type { SearchableColumnKey } from '../searchable/column-key.js';

export type MaybePromise<T> = T | Promise<T>;

/** How a configured column holds its envelope. */
export type ValueShape = 'text' | 'json' | 'jsonb';

export function shapeOf(baseTypeOid: number): ValueShape {
  if (baseTypeOid === JSONB_OID) return 'jsonb';
  if (baseTypeOid === JSON_OID) return 'json';
  return 'text';
}

const JSONB_VERSION = 1;

export interface ValueCacheOptions {
  /** Decrypted values kept (0 = no cache); the oldest entry goes first. */
  size: number;
  /** Entry lifetime in ms (0 = no expiry). */
  ttlMs: number;
  now?: () => number;
}

/**
 * Decrypted values by stored envelope: a hot row read again costs a Map lookup
 * instead of an HMAC and an AES decryption. The key is the whole envelope, MAC
 * included, so only a value that already passed its MAC check is ever served.
 */
class ValueCache {
  private readonly map = new Map<string, { pt: Buffer; at: number }>();
  private readonly now: () => number;
  constructor(private readonly o: ValueCacheOptions) {
    this.now = o.now ?? Date.now;
  }
  get(key: string): Buffer | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    if (this.o.ttlMs > 0 && this.now() - e.at > this.o.ttlMs) {
      this.map.delete(key);
      return undefined;
    }
    // No reordering on a hit (FIFO eviction): one hash lookup per read, not three.
    return e.pt;
  }
  set(key: string, pt: Buffer): void {
    this.map.set(key, { pt, at: this.now() });
    if (this.map.size > this.o.size) this.map.delete(this.map.keys().next().value!);
  }
  clear(): void {
    this.map.clear();
  }
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
    if (head && value[0] !== JSONB_VERSION) throw new CMEKDecryptionError('bad_format', { detail: 'unsupported jsonb binary version' });
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

  decryptText(value: Buffer): MaybePromise<Buffer> {
    if (!Keyring.isEncrypted(value)) return value;
    const cache = this.cache;
    if (!cache) return this.keyring.tryDecryptSync(value) ?? this.keyring.decryptBytes(value);
    const key = value.toString('latin1');
    const hit = cache.get(key);
    if (hit) return hit;
    const pt = this.keyring.tryDecryptSync(value);
    if (pt) {
      cache.set(key, pt);
      return pt;
    }
    return this.keyring.decryptBytes(value).then((b) => {
      cache.set(key, b);
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
      if (e !== NEEDS_ASYNC) throw e;
      return encryptPaths(doc, paths, (s) => this.keyring.encrypt(s), opts);
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
