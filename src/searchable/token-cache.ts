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
//  - Entries live in one buffer (plaintext, then token text, per slot), not in
//    JS strings: nothing is allocated per entry, so the cache adds no garbage
//    collection work, and clear() really wipes the plaintexts (a string cannot
//    be zeroed). Plaintexts longer than `maxPlaintext` bytes are not cached.
//  - Admission on the second sight: a plaintext enters only when its
//    fingerprint was seen before, so one-off values (uniformly random lookups
//    over many tokens) do not evict the hot ones.
// Trade-off: up to `size` recent plaintexts (token hashes) stay in memory;
// size 0 disables it.
import { tokenTextLength } from './deterministic.js';

/**
 * Longest plaintext cached by default: a prefixed hex SHA-256 (`sha256:…`, 71
 * bytes) or a base64 SHA-512 (88) fits. A slot is then 324 bytes: 3.2 MB for
 * the default 10,000 slots, allocated when the first token is admitted.
 */
export const DEFAULT_MAX_PLAINTEXT = 96;

export class TokenCache {
  private readonly slots: number;
  /** Bytes per slot: the longest plaintext and its token text. */
  private readonly stride: number;
  /** Allocated at the first admission (a key that is only written to never needs it). */
  private arena: Buffer | undefined;
  /** Per slot: the plaintext's length in bytes, -1 = empty. */
  private readonly ptLengths: Int32Array;
  /** Per slot: the plaintext's fingerprint (most other plaintexts differ here already). */
  private readonly prints: Uint32Array;
  /** Fingerprints of plaintexts seen once (the admission filter). */
  private readonly seen: Uint32Array;
  private readonly mask: number;
  hits = 0;
  misses = 0;

  constructor(
    readonly size: number,
    readonly maxPlaintext = DEFAULT_MAX_PLAINTEXT,
  ) {
    this.slots = Math.max(0, Math.floor(size));
    this.stride = maxPlaintext + tokenTextLength(maxPlaintext);
    this.ptLengths = new Int32Array(this.slots).fill(-1);
    this.prints = new Uint32Array(this.slots);
    let n = 1;
    while (n < this.slots * 4) n <<= 1;
    this.seen = new Uint32Array(this.slots === 0 ? 0 : n);
    this.mask = n - 1;
  }

  get enabled(): boolean {
    return this.slots > 0;
  }

  /** The plaintext's fingerprint (never 0): what find() and offer() take. */
  fingerprint(pt: Buffer): number {
    return fingerprint(pt);
  }

  /**
   * Where the cached token text of `pt` (fingerprint `h`) is: its offset in
   * `tokens()`, or -1 for a miss (which the caller computes and offers).
   * Its length is `tokenTextLength(pt.length)`.
   */
  find(pt: Buffer, h: number): number {
    const slot = h % this.slots;
    const n = pt.length;
    if (this.prints[slot] === h && this.ptLengths[slot] === n) {
      const a = this.arena!;
      const at = slot * this.stride;
      let same = true;
      for (let i = 0; i < n; i++) {
        if (a[at + i] !== pt[i]) {
          same = false;
          break;
        }
      }
      if (same) {
        this.hits++;
        return at + n;
      }
    }
    this.misses++;
    return -1;
  }

  /** The buffer find()'s offsets point into (valid until the next offer()). */
  tokens(): Buffer {
    return this.arena!;
  }

  /** A token just computed for a miss, as its text token[start, end): kept when its plaintext was seen before. */
  offer(pt: Buffer, h: number, token: Buffer, start: number, end: number): void {
    const n = pt.length;
    if (n > this.maxPlaintext || end - start !== tokenTextLength(n)) return;
    const at = h & this.mask;
    if (this.seen[at] !== h) {
      this.seen[at] = h;
      return;
    }
    const slot = h % this.slots;
    const a = (this.arena ??= Buffer.alloc(this.slots * this.stride));
    const off = slot * this.stride;
    a.set(pt, off);
    token.copy(a, off + n, start, end);
    this.ptLengths[slot] = n;
    this.prints[slot] = h;
  }

  /** The token of `pt`, from the cache or from `compute`. */
  get(pt: Buffer, compute: (pt: Buffer) => string): string {
    if (!this.enabled) return compute(pt);
    const h = fingerprint(pt);
    const at = this.find(pt, h);
    if (at >= 0) return this.arena!.toString('latin1', at, at + tokenTextLength(pt.length));
    const t = compute(pt);
    const b = Buffer.from(t, 'latin1');
    this.offer(pt, h, b, 0, b.length);
    return t;
  }

  /** How many tokens are held. */
  count(): number {
    let n = 0;
    for (const l of this.ptLengths) if (l >= 0) n++;
    return n;
  }

  /** Forgets every entry and wipes the plaintexts held. */
  clear(): void {
    this.arena?.fill(0);
    this.ptLengths.fill(-1);
    this.prints.fill(0);
    this.seen.fill(0);
  }
}

/** FNV-1a, 32 bits (never 0, the empty slot of the admission filter and of `prints`). */
function fingerprint(b: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return (h >>> 0) || 1;
}
