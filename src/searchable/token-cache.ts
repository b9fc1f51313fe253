// A bounded cache plaintext -> token text for one column key. A token depends
// only on the key and the plaintext, never on the KEK wrappings, so an entry
// stays right for the key's lifetime (rotations change headers, not tokens). A
// hit saves the HMAC + AES-CBC + HMAC of a lookup's candidates.
//  - Direct-mapped: `size` slots, a plaintext's slot is its 32-bit fingerprint
//    modulo `size`, and a newer entry replaces the one in its slot. A lookup
//    hashes the bytes it has and compares them with the one entry there: no
//    key string is built, so a miss (most lookups of uniformly spread values)
//    costs about a tenth of a microsecond. A Map keyed by the plaintext's text
//    cost ~1 µs per lookup, hit or miss.
//  - Admission on the second sight: a plaintext enters only when its
//    fingerprint was seen before. Entries outlive V8's young generation, so
//    caching every one-off value (uniformly random lookups over many tokens)
//    promotes a string per lookup to the old generation and cost more in GC
//    than the crypto it saved; values looked up again (hot tokens) still get in.
// Trade-off: up to `size` recent plaintexts (token hashes) stay in the heap;
// size 0 disables it.
export class TokenCache {
  /** Per slot: the plaintext (latin1, one char per byte) followed by its token text. */
  private readonly entries: (string | undefined)[];
  /** Per slot: the plaintext's length in bytes (where the token starts in the entry). */
  private readonly ptLengths: Int32Array;
  /** Per slot: the plaintext's fingerprint (most other plaintexts differ here already). */
  private readonly prints: Uint32Array;
  /** Fingerprints of plaintexts seen once (the admission filter). */
  private readonly seen: Uint32Array;
  private readonly mask: number;
  hits = 0;
  misses = 0;

  constructor(readonly size: number) {
    const n = Math.max(0, Math.floor(size));
    this.entries = new Array<string | undefined>(n).fill(undefined);
    this.ptLengths = new Int32Array(n).fill(-1);
    this.prints = new Uint32Array(n);
    let slots = 1;
    while (slots < n * 4) slots <<= 1;
    this.seen = new Uint32Array(n === 0 ? 0 : slots);
    this.mask = slots - 1;
  }

  get enabled(): boolean {
    return this.entries.length > 0;
  }

  /** The plaintext's fingerprint (only when enabled): what find() and offer() take. */
  fingerprint(pt: Buffer): number {
    return fingerprint(pt);
  }

  /** The cached token of `pt` (fingerprint `h`), or undefined: a miss, which the caller computes and offers. */
  find(pt: Buffer, h: number): string | undefined {
    const slot = h % this.entries.length;
    const e = this.entries[slot];
    const n = pt.length;
    if (e !== undefined && this.prints[slot] === h && this.ptLengths[slot] === n && samePrefix(e, pt)) {
      this.hits++;
      return e.slice(n);
    }
    this.misses++;
    return undefined;
  }

  /**
   * A token just computed for a miss, as its text's bytes token[start, end):
   * kept when its plaintext was seen before.
   */
  offer(pt: Buffer, h: number, token: Buffer, start: number, end: number): void {
    const at = h & this.mask;
    if (this.seen[at] !== h) {
      this.seen[at] = h;
      return;
    }
    // Built in one buffer, so the entry is one flat string (a concatenation would be a
    // rope, and reading its characters at every lookup costs more than the lookup).
    const n = pt.length;
    const b = Buffer.allocUnsafe(n + end - start);
    pt.copy(b, 0);
    token.copy(b, n, start, end);
    const slot = h % this.entries.length;
    this.entries[slot] = b.toString('latin1');
    this.ptLengths[slot] = n;
    this.prints[slot] = h;
  }

  /** The token of `pt`, from the cache or from `compute`. */
  get(pt: Buffer, compute: (pt: Buffer) => string): string {
    if (!this.enabled) return compute(pt);
    const h = fingerprint(pt);
    const v = this.find(pt, h);
    if (v !== undefined) return v;
    const t = compute(pt);
    const b = Buffer.from(t, 'latin1');
    this.offer(pt, h, b, 0, b.length);
    return t;
  }

  /** How many tokens are held. */
  count(): number {
    let n = 0;
    for (const e of this.entries) if (e !== undefined) n++;
    return n;
  }

  clear(): void {
    this.entries.fill(undefined);
    this.ptLengths.fill(-1);
    this.prints.fill(0);
    this.seen.fill(0);
  }
}

/** True when the entry starts with the bytes of `pt` (one latin1 char per byte). */
function samePrefix(e: string, pt: Buffer): boolean {
  for (let i = 0; i < pt.length; i++) if (e.charCodeAt(i) !== pt[i]) return false;
  return true;
}

/** FNV-1a, 32 bits (never 0, the empty slot of the admission filter). */
function fingerprint(b: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return (h >>> 0) || 1;
}
