// The keyring's rotation and reporting (Keyring.rewrap, needsRotation, describe,
// primaryLabel): admin paths, off the per-value hot path. Made once per keyring;
// backend lookups, unwraps and counters are the keyring's own (keyring.ts).
import { decodeStrict } from './base64url.js';
import { backendName, decodeHeader, formatHeader, headerKey, isEnvelope, kekIdLabel, locate, type EnvelopeLayout } from './envelope.js';
import { CMEKDecryptionError } from './errors.js';
import { MIN_TOKEN_BYTES } from './fernet.js';
import { SingleFlight } from './single-flight.js';
import type { KekBackend, WrappedDek } from './kek/types.js';

/** Where a value's DEK lives, safe to log and report (no key bytes). */
export interface ValueDescription {
  backend: string;
  kekId: string;
  primary: boolean;
}

const REWRAP_CACHE_MAX = 4096;

export class KeyringRotation {
  // Old header -> new header: values sharing a DEK are re-wrapped with one backend call.
  private readonly rewraps = new SingleFlight<string>(REWRAP_CACHE_MAX);

  constructor(
    private readonly primary: KekBackend,
    /** Keyring.backendFor and callUnwrapAsync: a rewrap finds, fails and counts unwraps as a read does. */
    private readonly backendFor: (w: WrappedDek) => KekBackend,
    private readonly callUnwrapAsync: (b: KekBackend, w: WrappedDek) => Promise<Buffer>,
    /** The keyring's counters (KeyringStats.rewraps). */
    private readonly counters: { rewraps: number },
  ) {}

  describe(value: string): ValueDescription {
    const w = this.headerOf(value).w;
    return {
      backend: backendName(w.tag),
      kekId: kekIdLabel(w.tag, w.kekId),
      primary: this.isPrimary(w),
    };
  }

  needsRotation(value: string): boolean {
    if (!isEnvelope(value)) return false;
    return !this.isPrimary(this.headerOf(value).w);
  }

  async rewrap(value: string): Promise<string> {
    const { v, at, w } = this.headerOf(value);
    // Never give a fresh header to a token that cannot be one (the token itself is not authenticated here).
    const token = decodeStrict(v, at.bar2 + 1, v.length, true);
    if (!token || token.length < MIN_TOKEN_BYTES) {
      throw new CMEKDecryptionError('bad_token', { detail: 'the Fernet token is not well-formed' });
    }
    if (this.isPrimary(w)) return value;
    // Keyed by the primary too: a remote primary's key version can move on while we run.
    const id = `${this.primaryLabel()} ${headerKey(v, at)}`;
    return (await this.rewraps.run(id, () => this.rewrapHeader(w))) + v.toString('latin1', at.bar2 + 1);
  }

  private async rewrapHeader(w: WrappedDek): Promise<string> {
    const b = this.backendFor(w);
    let nw: WrappedDek;
    if (b === this.primary) {
      nw = await this.primary.rewrap(w);
    } else {
      const dek = await this.callUnwrapAsync(b, w);
      try {
        nw = await this.primary.wrap(dek);
      } finally {
        dek.fill(0);
      }
    }
    this.counters.rewraps++;
    return formatHeader(nw);
  }

  private headerOf(value: string): { v: Buffer; at: EnvelopeLayout; w: WrappedDek } {
    const v = Buffer.from(value, 'utf8');
    if (!isEnvelope(v)) throw new CMEKDecryptionError('bad_format', { detail: 'not an envelope (no cmek:v1: prefix)' });
    const at = locate(v);
    return { v, at, w: decodeHeader(v, at) };
  }

  private isPrimary(w: WrappedDek): boolean {
    return w.tag === this.primary.tag && w.kekId.equals(this.primary.primaryKekId());
  }

  primaryLabel(): string {
    return `${this.primary.name}:${kekIdLabel(this.primary.tag, this.primary.primaryKekId())}`;
  }

  /** Forgets the re-wrapped headers (Keyring.close). */
  clear(): void {
    this.rewraps.clear();
  }
}
