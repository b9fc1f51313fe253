// An in-memory stand-in for a remote KEK backend (Vault-like: tag 0x02, ASCII
// version ids, empty envelope nonce). It only has the async API, answers after a
// timer tick, and counts its calls, so the keyring's remote paths (no sync fast
// path, coalescing, failures) can be tested without a server. Real AES-GCM.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { wrappedDekHeader } from '../../src/crypto/envelope.js';
import { CMEKDecryptionError } from '../../src/crypto/errors.js';
import { BackendTag, type KekBackend, type WrappedDek } from '../../src/crypto/kek/types.js';

const tick = () => new Promise((r) => setTimeout(r, 1));

export class FakeRemoteBackend implements KekBackend {
  readonly name = 'vault' as const;
  readonly tag = BackendTag.vault;
  readonly calls = { generate: 0, wrap: 0, unwrap: 0, rewrap: 0 };
  private readonly versions = new Map<string, Buffer>();
  private current = '0';
  /** When set, every call rejects with it (an unreachable server). */
  fail?: Error;

  constructor() {
    this.rotate();
  }

  /** A new KEK version becomes the primary; older ones stay readable. */
  rotate(): void {
    this.current = String(Number(this.current) + 1);
    this.versions.set(this.current, randomBytes(32));
  }

  async init(): Promise<void> {}

  primaryKekId(): Buffer {
    return Buffer.from(this.current);
  }

  hasKek(kekId: Buffer): boolean {
    return this.versions.has(kekId.toString('latin1'));
  }

  private seal(dek: Buffer): WrappedDek {
    const kekId = this.primaryKekId();
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.versions.get(this.current)!, nonce);
    c.setAAD(wrappedDekHeader(this.tag, kekId));
    const ct = Buffer.concat([c.update(dek), c.final()]);
    return { tag: this.tag, kekId, nonce: Buffer.alloc(0), wrapped: Buffer.concat([nonce, ct, c.getAuthTag()]) };
  }

  private async remote(): Promise<void> {
    await tick();
    if (this.fail) throw this.fail;
  }

  async generateDek(): Promise<{ dek: Buffer; wrapped: WrappedDek }> {
    await this.remote();
    this.calls.generate++;
    const dek = randomBytes(32);
    return { dek, wrapped: this.seal(dek) };
  }

  async wrap(dek: Buffer): Promise<WrappedDek> {
    await this.remote();
    this.calls.wrap++;
    return this.seal(dek);
  }

  private open(w: WrappedDek): Buffer {
    const key = this.versions.get(w.kekId.toString('latin1'));
    if (!key) throw new CMEKDecryptionError('unknown_kek', { backend: 'vault', kekId: w.kekId.toString('latin1') });
    try {
      const d = createDecipheriv('aes-256-gcm', key, w.wrapped.subarray(0, 12));
      d.setAAD(wrappedDekHeader(this.tag, w.kekId));
      d.setAuthTag(w.wrapped.subarray(w.wrapped.length - 16));
      return Buffer.concat([d.update(w.wrapped.subarray(12, w.wrapped.length - 16)), d.final()]);
    } catch {
      throw new CMEKDecryptionError('unwrap_failed', { backend: 'vault', kekId: w.kekId.toString('latin1') });
    }
  }

  async unwrap(w: WrappedDek): Promise<Buffer> {
    await this.remote();
    this.calls.unwrap++;
    return this.open(w);
  }

  async rewrap(w: WrappedDek): Promise<WrappedDek> {
    await this.remote();
    this.calls.rewrap++;
    return this.seal(this.open(w));
  }
}
