// A bounded cache plaintext -> token for one column key. A token depends only
// on the key and the plaintext, never on the KEK wrappings, so an entry stays
// right for the key's lifetime (rotations change headers, not tokens). A hit
// saves the HMAC + AES-CBC + HMAC of a lookup's candidates.
//  - Two generations instead of a strict LRU: a hit is one or two Map lookups,
//    and what was not used during the last two generations is dropped.
//  - Admission on the second sight: a plaintext enters only when its
//    fingerprint was seen before. Entries outlive V8's young generation, so
//    caching every one-off value (uniformly random lookups over many tokens)
//    promotes two strings per lookup to the old generation and cost more in GC
//    than the crypto it saved; values looked up again (hot tokens) still get in.
// Trade-off: up to `size` recent plaintexts (token hashes) stay in the heap;
// size 0 disables it.
export class TokenCache {
  private young = new Map<string, string>();
  private old = new Map<string, string>();
  private readonly half: number;
  /** Fingerprints of plaintexts seen once (the admission filter). */
  private readonly seen: Uint32Array;
  private readonly mask: number;
  hits = 0;
  misses = 0;

  constructor(readonly size: number) {
    this.half = Math.max(0, Math.floor(size / 2));
    let slots = 1;
    while (slots < size * 4) slots <<= 1;
    this.seen = new Uint32Array(this.half === 0 ? 0 : slots);
    this.mask = slots - 1;
  }

  get(pt: Buffer, compute: (pt: Buffer) => string): string {
    if (this.half === 0) return compute(pt);
    const k = pt.toString('latin1');
    let v = this.young.get(k);
    if (v !== undefined) {
      this.hits++;
      return v;
    }
    v = this.old.get(k);
    if (v === undefined) {
      this.misses++;
      v = compute(pt);
      const h = fingerprint(pt);
      const at = h & this.mask;
      if (this.seen[at] !== h) {
        this.seen[at] = h;
        return v;
      }
    } else this.hits++;
    if (this.young.size >= this.half) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(k, v);
    return v;
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
    this.seen.fill(0);
  }
}

/** FNV-1a, 32 bits (never 0, the empty slot). */
function fingerprint(b: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return (h >>> 0) || 1;
}
