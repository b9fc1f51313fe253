// The keyring: what the proxy and the admin commands encrypt and decrypt with.
// One primary backend wraps new DEKs; every configured backend stays readable,
// so a KEK rotation or a backend migration never stops reads. Values without
// the cmek:v1: prefix are legacy plaintext and pass through untouched.
// Sync fast paths exist because the proxy rewrites messages in place: with a
// warm DEK (or the local backend) nothing awaits.
import type { DekPolicy, KekConfig } from '../config/types.js';
import { paddedLength, writePadded } from './base64url.js';
import { DekCache, DekWriter, type Clock, type DekCacheStats, type WriteDek } from './dek-cache.js';
import {
  backendName,
  decodeHeader,
  formatHeader,
  headerKey,
  isEnvelope,
  kekIdLabel,
  locate,
  PREFIX,
  type EnvelopeLayout,
} from './envelope.js';
import { CMEKDecryptionError } from './errors.js';
import { decryptRange, encryptRaw, FernetError, FernetKey } from './fernet.js';
import { createBackends } from './kek/registry.js';
import { KeyringRotation, type ValueDescription } from './keyring-rotation.js';
import { SingleFlight } from './single-flight.js';
import type { KekBackend, WrappedDek } from './kek/types.js';

export interface KeyringOptions {
  primary: KekBackend;
  readable: KekBackend[];
  dek: DekPolicy;
  /** Milliseconds clock for DEK ages and cache TTLs (tests). */
  clock?: Clock;
}

export interface KeyringStats {
  cache: DekCacheStats;
  /** DEKs unwrapped by a backend (cache misses that reached a KEK). */
  unwraps: number;
  /** Fresh DEKs generated for writes. */
  generates: number;
  /** Wrapped DEKs re-wrapped under the primary KEK (each shared header counted once). */
  rewraps: number;
}

const UNKNOWN_KEK_HINT: Record<string, string> = {
  local: 'add the KEK file that wrote it to kek.local.previous',
  vault: "check kek.vault.key_name and the Transit key's min_decryption_version",
  aws_kms: 'configure that KMS key (kek.aws_kms.key_id) as readable',
};

interface UnwrapPlan {
  at: EnvelopeLayout;
  id: string;
  w: WrappedDek;
  b: KekBackend;
}

export class Keyring {
  private readonly primary: KekBackend;
  private readonly readable: KekBackend[];
  private readonly byTag = new Map<number, KekBackend>();
  private readonly cache: DekCache;
  private readonly writer: DekWriter;
  // One remote unwrap per DEK however many values of it are being read at once.
  private readonly unwrapping = new SingleFlight<void>();
  private refreshing?: Promise<void>;
  private readonly counters = { unwraps: 0, generates: 0, rewraps: 0 };
  /** Rewrap, needsRotation, describe, primaryLabel (keyring-rotation.ts). */
  private readonly rotation: KeyringRotation;

  constructor(opts: KeyringOptions) {
    this.primary = opts.primary;
    this.readable = [...opts.readable];
    for (const b of [opts.primary, ...opts.readable]) {
      const seen = this.byTag.get(b.tag);
      if (seen && seen !== b) throw new Error(`two ${b.name} backends given to one keyring`);
      this.byTag.set(b.tag, b);
    }
    this.cache = new DekCache(opts.dek.cacheSize, opts.dek.cacheTtlSeconds, opts.clock);
    this.writer = new DekWriter(opts.dek, opts.clock);
    this.rotation = new KeyringRotation(this.primary, (w) => this.backendFor(w), (b, w) => this.callUnwrapAsync(b, w), this.counters);
  }

  /** Builds, initialises (fails fast on misconfiguration) and wires every configured backend. */
  static async fromConfig(kek: KekConfig): Promise<Keyring> {
    const { primary, readable } = await createBackends(kek);
    const all = [...new Set([primary, ...readable])];
    try {
      for (const b of all) await b.init();
    } catch (e) {
      await Promise.allSettled(all.map((b) => b.close?.()));
      throw e;
    }
    return new Keyring({ primary, readable, dek: kek.dek });
  }

  /**
   * The backend instances this keyring wraps and unwraps with. Searchable
   * columns (src/searchable) wrap their column DEKs through the same ones.
   */
  backends(): { primary: KekBackend; readable: KekBackend[] } {
    return { primary: this.primary, readable: [...this.readable] };
  }

  static isEncrypted(v: string | Buffer): boolean {
    return isEnvelope(v);
  }

  // ---- writes -------------------------------------------------------------

  async encrypt(plaintext: string): Promise<string> {
    return (await this.encryptBytes(Buffer.from(plaintext, 'utf8'))).toString('latin1');
  }

  /** The reusable write DEK, unless the primary KEK changed since it was wrapped (a Vault/KMS rotation). */
  private takeWriteDek(): WriteDek | undefined {
    const d = this.writer.take();
    if (d && (d.tag !== this.primary.tag || !d.kekId.equals(this.primary.primaryKekId()))) {
      this.writer.retire();
      return undefined;
    }
    return d;
  }

  /** Re-reads the primary KEK's current version where the backend has one (Vault), e.g. before a rotation. */
  async refreshPrimary(): Promise<void> {
    await this.primary.refresh?.();
  }

  /** Encrypts without awaiting; undefined only when a fresh DEK needs a remote backend call. */
  tryEncryptSync(pt: Buffer): Buffer | undefined {
    const d = this.takeWriteDek();
    if (d) return seal(d, pt);
    if (!this.primary.generateDekSync) return undefined;
    this.counters.generates++;
    return this.sealFresh(this.primary.generateDekSync(), pt);
  }

  async encryptBytes(pt: Buffer): Promise<Buffer> {
    const sync = this.tryEncryptSync(pt);
    if (sync) return sync;
    if (!this.writer.reuses) {
      const g = await this.primary.generateDek();
      this.counters.generates++;
      return this.sealFresh(g, pt);
    }
    // Concurrent writers share one in-flight generate rather than each calling the backend.
    for (;;) {
      const d = this.takeWriteDek();
      if (d) return seal(d, pt);
      this.refreshing ??= this.refreshWriteDek().finally(() => {
        this.refreshing = undefined;
      });
      await this.refreshing;
    }
  }

  private async refreshWriteDek(): Promise<void> {
    const g = await this.primary.generateDek();
    this.counters.generates++;
    this.writer.install(this.adopt(g.dek, g.wrapped, 0));
  }

  /** Seals one value under a just-generated DEK; keeps the DEK for later values if the policy allows. */
  private sealFresh(g: { dek: Buffer; wrapped: WrappedDek }, pt: Buffer): Buffer {
    const d = this.adopt(g.dek, g.wrapped, 1);
    if (this.writer.reuses) {
      this.writer.install(d);
      return seal(d, pt);
    }
    try {
      return seal(d, pt);
    } finally {
      d.key.destroy();
    }
  }

  /** Turns a raw DEK into a WriteDek (zeroing the raw bytes); seeds the read cache so read-after-write hits. */
  private adopt(dek: Buffer, wrapped: WrappedDek, uses: number): WriteDek {
    const headerText = formatHeader(wrapped);
    const d: WriteDek = {
      key: new FernetKey(dek),
      header: Buffer.from(headerText, 'latin1'),
      createdAt: this.writer.now(),
      uses,
      tag: wrapped.tag,
      kekId: Buffer.from(wrapped.kekId),
    };
    if (this.writer.reuses && this.cache.enabled) {
      // The cache id is the header text between the prefix and the last '|' (see headerKey).
      this.cache.set(headerText.slice(PREFIX.length, -1), new FernetKey(dek));
    }
    dek.fill(0);
    return d;
  }

  // ---- reads --------------------------------------------------------------

  /** No prefix: returned as-is (legacy plaintext). */
  async decrypt(value: string): Promise<string> {
    if (!isEnvelope(value)) return value;
    return (await this.decryptBytes(Buffer.from(value, 'utf8'))).toString('utf8');
  }

  /** Decrypts without awaiting; undefined only when the DEK is not cached and its backend is remote. */
  tryDecryptSync(v: Buffer): Buffer | undefined {
    const r = this.decryptOrPlan(v);
    return Buffer.isBuffer(r) ? r : undefined;
  }

  async decryptBytes(v: Buffer): Promise<Buffer> {
    const r = this.decryptOrPlan(v);
    if (Buffer.isBuffer(r)) return r;
    const { at, id, w, b } = r;
    if (this.cache.enabled) {
      await this.unwrapping.run(id, () => this.unwrapToCache(id, w, b));
      const key = this.cache.get(id, false);
      if (key) return this.open(key, v, at);
      // Evicted again before this reader resumed (tiny cache): unwrap privately below.
    }
    const dek = await this.callUnwrapAsync(b, w);
    const key = new FernetKey(dek);
    dek.fill(0);
    try {
      return this.open(key, v, at);
    } finally {
      key.destroy();
    }
  }

  /** The plaintext when no remote call is needed, else what the async path needs to unwrap. */
  private decryptOrPlan(v: Buffer): Buffer | UnwrapPlan {
    if (!isEnvelope(v)) return v;
    const at = locate(v);
    const id = headerKey(v, at);
    const key = this.cache.get(id);
    if (key) return this.open(key, v, at);
    const w = decodeHeader(v, at);
    const b = this.backendFor(w);
    if (!b.unwrapSync) return { at, id, w, b };
    const dek = this.callUnwrap(() => b.unwrapSync!(w), b, w);
    return this.openFresh(id, dek, v, at);
  }

  private async unwrapToCache(id: string, w: WrappedDek, b: KekBackend): Promise<void> {
    const dek = await this.callUnwrapAsync(b, w);
    const key = new FernetKey(dek);
    dek.fill(0);
    if (!this.cache.set(id, key)) key.destroy();
  }

  private openFresh(id: string, dek: Buffer, v: Buffer, at: EnvelopeLayout): Buffer {
    const key = new FernetKey(dek);
    dek.fill(0);
    const kept = this.cache.set(id, key);
    try {
      return this.open(key, v, at);
    } finally {
      if (!kept) key.destroy();
    }
  }

  private open(key: FernetKey, v: Buffer, at: EnvelopeLayout): Buffer {
    try {
      return decryptRange(key, v, at.bar2 + 1, v.length);
    } catch (e) {
      if (!(e instanceof FernetError)) throw e;
      const w = decodeHeader(v, at);
      const reason = e.reason === 'bad_mac' ? 'bad_mac' : e.reason === 'bad_base64' ? 'bad_base64' : 'bad_token';
      throw new CMEKDecryptionError(reason, {
        detail: `Fernet token: ${e.reason}`,
        backend: backendName(w.tag),
        kekId: kekIdLabel(w.tag, w.kekId),
      });
    }
  }

  private backendFor(w: WrappedDek): KekBackend {
    const name = backendName(w.tag);
    const kekId = kekIdLabel(w.tag, w.kekId);
    const b = this.byTag.get(w.tag);
    if (!b) {
      throw new CMEKDecryptionError('unknown_backend', {
        backend: name,
        kekId,
        detail: `the ${name} backend is not configured; configure it (it may be readable only) to read this value`,
      });
    }
    if (!b.hasKek(w.kekId)) {
      throw new CMEKDecryptionError('unknown_kek', {
        backend: name,
        kekId,
        detail: `the ${name} backend does not hold this KEK: ${UNKNOWN_KEK_HINT[name]}`,
      });
    }
    return b;
  }

  private callUnwrap(fn: () => Buffer, b: KekBackend, w: WrappedDek): Buffer {
    try {
      const dek = fn();
      this.counters.unwraps++;
      return dek;
    } catch (e) {
      throw asDecryptionError(e, b, w);
    }
  }

  private async callUnwrapAsync(b: KekBackend, w: WrappedDek): Promise<Buffer> {
    try {
      const dek = await b.unwrap(w);
      this.counters.unwraps++;
      return dek;
    } catch (e) {
      throw asDecryptionError(e, b, w);
    }
  }

  // ---- rotation and reporting (keyring-rotation.ts) ----------------------

  describe(value: string): ValueDescription {
    return this.rotation.describe(value);
  }

  /**
   * True for an envelope whose DEK is not wrapped by the primary KEK; false for
   * legacy plaintext. A malformed envelope throws CMEKDecryptionError.
   */
  needsRotation(value: string): boolean {
    return this.rotation.needsRotation(value);
  }

  /**
   * The same value with its DEK re-wrapped under the primary KEK; the Fernet
   * token is kept byte for byte. It is not decrypted (with Vault or KMS the DEK
   * need not leave the service), so `verify` is what proves values readable.
   */
  rewrap(value: string): Promise<string> {
    return this.rotation.rewrap(value);
  }

  /** e.g. `local:1f2e3d4c5b6a7988`, `vault:3` (safe to log). */
  primaryLabel(): string {
    return this.rotation.primaryLabel();
  }

  stats(): KeyringStats {
    return { cache: this.cache.stats(), ...this.counters };
  }

  /** Zeroes every cached DEK and closes the backends. */
  async close(): Promise<void> {
    this.cache.clear();
    this.writer.retire();
    this.rotation.clear();
    await Promise.allSettled([...new Set(this.byTag.values())].map((b) => b.close?.()));
  }
}

/** header + token text, the token encoded straight into the value (no string of it is made). */
function seal(d: WriteDek, pt: Buffer): Buffer {
  const raw = encryptRaw(d.key, pt);
  const h = d.header.length;
  const out = Buffer.allocUnsafe(h + paddedLength(raw.length));
  d.header.copy(out, 0);
  writePadded(raw, 0, raw.length, out, h);
  return out;
}

/** Backends should throw CMEKDecryptionError; anything else (a network error) is reported as backend_unavailable. */
function asDecryptionError(e: unknown, b: KekBackend, w: WrappedDek): CMEKDecryptionError {
  if (e instanceof CMEKDecryptionError) return e;
  return new CMEKDecryptionError('backend_unavailable', {
    backend: b.name,
    kekId: kekIdLabel(w.tag, w.kekId),
    detail: e instanceof Error ? e.name : 'unwrap failed',
    cause: e,
  });
}
