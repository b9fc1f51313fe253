// DEK lifetimes on both sides of the keyring.
// Read side: unwrapping is the expensive (possibly remote) step, and many
// values share a DEK, so unwrapped DEKs are kept in a bounded cache keyed by the
// envelope header text (a 1:1 image of the wrapped bytes: base64 is canonical).
// Write side: one DEK serves many new values, bounded by age and use count, so
// a burst of writes costs one generate/wrap instead of one per value.
// Every key that leaves either side is zeroed at once; callers only use a key
// synchronously right after getting it, so nothing can zero it under them.
import { ClockCache } from '../cache/clock-cache.js';
import type { DekPolicy } from '../config/types.js';
import type { FernetKey } from './fernet.js';

/** Milliseconds, like Date.now; injectable for tests. */
export type Clock = () => number;

export interface DekCacheStats {
  size: number;
  hits: number;
  misses: number;
  evictions: number;
}

interface Entry {
  key: FernetKey;
  at: number;
}

export class DekCache {
  /** CLOCK eviction (clock-cache.ts): a hit sets a bit; reads that alternate between DEKs never churn the Map. */
  private readonly entries: ClockCache<string, Entry>;
  private readonly ttlMs: number;
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(
    private readonly maxEntries: number,
    ttlSeconds: number,
    private readonly clock: Clock = Date.now,
  ) {
    this.ttlMs = ttlSeconds * 1000;
    // Every key that leaves (evicted, expired, replaced, cleared) is zeroed at once.
    this.entries = new ClockCache({
      maxEntries,
      onEvict: (_id, e) => {
        e.key.destroy();
        this.evictions++;
      },
    });
  }

  get enabled(): boolean {
    return this.maxEntries > 0;
  }

  get size(): number {
    return this.entries.size;
  }

  /** `count` false: a re-check after an unwrap this caller already counted as a miss. */
  get(id: string, count = true): FernetKey | undefined {
    const e = this.entries.get(id);
    if (!e) {
      if (count) this.misses++;
      return undefined;
    }
    if (this.ttlMs > 0 && this.clock() - e.at >= this.ttlMs) {
      this.entries.delete(id);
      if (count) this.misses++;
      return undefined;
    }
    if (count) this.hits++;
    return e.key;
  }

  /** Takes ownership of key; false when caching is off (the caller must destroy it after use). */
  set(id: string, key: FernetKey): boolean {
    if (!this.enabled) return false;
    this.entries.delete(id); // an older key under this id is zeroed (and counted) first
    this.entries.set(id, { key, at: this.clock() });
    return true;
  }

  clear(): void {
    this.entries.clear();
  }

  stats(): DekCacheStats {
    return { size: this.entries.size, hits: this.hits, misses: this.misses, evictions: this.evictions };
  }
}

/** The DEK new values are written under, with the envelope header precomputed once. */
export interface WriteDek {
  key: FernetKey;
  /** `cmek:v1:<wrapped>|<nonce>|` as bytes: every value under this DEK starts with it. */
  header: Buffer;
  createdAt: number;
  uses: number;
  /** The KEK that wrapped it: a DEK whose KEK stopped being the primary is not used for new values. */
  tag: number;
  kekId: Buffer;
}

export class DekWriter {
  private current?: WriteDek;
  private readonly maxAgeMs: number;
  private readonly maxUses: number;

  constructor(policy: Pick<DekPolicy, 'maxAgeSeconds' | 'maxUses'>, private readonly clock: Clock = Date.now) {
    this.maxAgeMs = policy.maxAgeSeconds * 1000;
    // maxUses below 1 cannot mean "unlimited" for a key bound: treat it as one value per DEK.
    this.maxUses = Math.max(1, Math.floor(policy.maxUses));
  }

  /** False when the policy asks for a fresh DEK per value. */
  get reuses(): boolean {
    return this.maxAgeMs > 0 && this.maxUses > 1;
  }

  now(): number {
    return this.clock();
  }

  /** The current DEK with one use counted, or undefined (and the old one zeroed) when a fresh one is due. */
  take(): WriteDek | undefined {
    const c = this.current;
    if (!c) return undefined;
    if (c.uses >= this.maxUses || this.clock() - c.createdAt >= this.maxAgeMs) {
      this.retire();
      return undefined;
    }
    c.uses++;
    return c;
  }

  /** Makes d the current DEK (its uses already counted by the caller), zeroing the previous one. */
  install(d: WriteDek): void {
    this.retire();
    this.current = d;
  }

  retire(): void {
    this.current?.key.destroy();
    this.current = undefined;
  }
}
