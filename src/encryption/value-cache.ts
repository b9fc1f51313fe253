// Decrypted values by stored envelope, kept in one byte ring. A hot row read
// again costs a lookup instead of an HMAC and an AES decryption.
//  - Entries (envelope, then plaintext) live in one Buffer used as a ring (the
//    oldest leave first); the index is typed arrays, 8-way set-associative,
//    holding each entry's offset, lengths and age. A hit touches the index's
//    set and one run of ring bytes, and no JS object per entry: nothing for
//    the garbage collector to trace, and few cache lines to reload when
//    Postgres and the clients have evicted them between two reads
//    (bench/value-cache.ts measures a hit cold).
//  - A value's set comes from 8 characters of the token's MAC text (no string
//    of the ~270-byte envelope is built or hashed per read). The cached
//    envelope is then compared with the value in full, so a hit is byte for
//    byte the value that was decrypted and passed its MAC check: header
//    (wrapped DEK, nonce) and token alike. Serving by the MAC alone would be
//    unsafe: the same token behind another wrapped DEK must fail as it does
//    uncached, not be answered from memory.
//  - Bounded by `size` entries and by bytes (`size` × 512, rounded up to a
//    power of two, 64 KiB to 1 GiB; the ring grows to that as it fills). A hit
//    on an entry in the oldest quarter of the ring moves it to the newest end,
//    so hot values outlive a scan of cold ones (a second chance, as CLOCK).
//  - An index slot whose entry the ring has passed is stale: known by its
//    position (behind the tail), never by trusting bytes that may have been
//    overwritten.

export interface ValueCacheOptions {
  /** Decrypted values kept (0 = no cache); the oldest entry goes first. */
  size: number;
  /** Entry lifetime in ms (0 = no expiry). */
  ttlMs: number;
  now?: () => number;
}

const WAYS = 8;
/** Per index slot in `meta`: ring offset, envelope length, plaintext length, insertion number. */
const META = 4;
/** Ring entry header: total bytes u32 | state u32 (LIVE, DEAD: no slot points at it, SKIP: padding to the ring's end). */
const HEAD = 8;
const LIVE = 0;
const DEAD = 1;
const SKIP = 2;
const BYTES_PER_ENTRY = 512;
const MIN_RING = 1 << 16;
const MAX_RING = 1 << 30;
const MAX_SETS = 1 << 17;

export class ValueCache {
  private readonly size: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  /** The ring's final length; it starts smaller and doubles up to it. */
  private readonly capacity: number;
  private readonly maxEntry: number;
  private readonly setMask: number;
  private ring: Buffer | undefined;
  /** Per index slot: the value's hash (0 = empty). Scanned on every lookup, so kept apart. */
  private prints: Int32Array | undefined;
  /** Per index slot: its entry's absolute ring position (stale once behind the tail). */
  private starts: Float64Array | undefined;
  private meta: Int32Array | undefined;
  /** Per index slot, with a TTL: when the entry was stored. */
  private stamps: Float64Array | undefined;
  /** Absolute positions: bytes [tail, head) of the ring hold entries; position p is at p % ring.length. */
  private head = 0;
  private tail = 0;
  /** Live entries (each pointed at by one index slot). */
  private count = 0;
  /** Entries inserted so far (mod 2^32): an entry's age in insertions says how near the tail it is. */
  private seq = 0;
  /** An entry being moved to the newest end is copied here first (the move may evict it). */
  private scratch: Buffer | undefined;
  /** Length of the plaintext the last successful find() located. */
  foundLength = 0;

  constructor(o: ValueCacheOptions) {
    this.size = Math.max(0, Math.floor(o.size));
    this.ttlMs = o.ttlMs;
    this.now = o.now ?? coarseNow;
    this.capacity = Math.min(MAX_RING, pow2AtLeast(Math.max(MIN_RING, Math.min(this.size, MAX_RING) * BYTES_PER_ENTRY)));
    this.maxEntry = this.capacity / 8;
    // At least 2 slots per entry: a set then rarely has more values than ways.
    this.setMask = Math.min(MAX_SETS, pow2AtLeast(Math.max(16, Math.ceil(this.size / 4)))) - 1;
  }

  /**
   * The plaintext cached for the value src[start, end), or undefined. The
   * Buffer is a view of the ring: valid until the next set() or clear().
   */
  getAt(src: Buffer, start: number, end: number): Buffer | undefined {
    const at = this.find(src, start, end);
    return at < 0 ? undefined : this.ring!.subarray(at, at + this.foundLength);
  }

  /** The buffer find()'s offsets point into (valid until the next set() or clear()). */
  bytes(): Buffer {
    return this.ring!;
  }

  /**
   * Where the plaintext cached for src[start, end) is in bytes(), its length in
   * foundLength; -1 when not cached. Allocates nothing.
   */
  find(src: Buffer, start: number, end: number): number {
    const prints = this.prints;
    if (prints === undefined) return -1;
    const h = hashOf(src, start, end);
    const n = end - start;
    const base = (h & this.setMask) * WAYS;
    for (let i = base; i < base + WAYS; i++) {
      if (prints[i] !== h) continue;
      const m = i * META;
      const meta = this.meta!;
      if (meta[m + 1] !== n) continue;
      const s = this.starts![i]!;
      if (s < this.tail) {
        prints[i] = 0;
        continue;
      }
      let off = meta[m]!;
      if (this.ring!.compare(src, start, end, off + HEAD, off + HEAD + n) !== 0) continue;
      if (this.ttlMs > 0 && this.now() - this.stamps![i]! > this.ttlMs) {
        this.drop(i);
        return -1;
      }
      // Near the tail (its oldest quarter by count or by bytes): moved to the newest
      // end, so a hot value is not the next to leave.
      if (((this.seq - meta[m + 3]!) >>> 0) * 4 >= this.size * 3 || (this.head - s) * 4 >= this.capacity * 3) {
        off = this.renew(i);
      }
      this.foundLength = meta[m + 2]!;
      return off + HEAD + n;
    }
    return -1;
  }

  /** Keeps `pt` as the plaintext of the envelope `value` (copies both). */
  set(value: Buffer, pt: Buffer): void {
    const n = value.length;
    const total = align8(HEAD + n + pt.length);
    if (this.size === 0 || total > this.maxEntry) return;
    const off = this.reserve(total);
    const ring = this.ring!;
    ring.writeUInt32LE(total, off);
    ring.writeUInt32LE(LIVE, off + 4);
    value.copy(ring, off + HEAD);
    pt.copy(ring, off + HEAD + n);
    this.index(hashOf(value, 0, n), off, n, pt.length, this.ttlMs > 0 ? this.now() : 0);
    this.head += total;
  }

  /** Forgets every entry and wipes the plaintexts held. */
  clear(): void {
    this.ring?.fill(0);
    this.scratch?.fill(0);
    this.prints?.fill(0);
    this.head = this.tail = this.count = 0;
  }

  /** Copies the entry of index slot i to the newest end; returns its new ring offset. */
  private renew(i: number): number {
    const ring = this.ring!;
    const m = i * META;
    const off = this.meta![m]!;
    const n = this.meta![m + 1]!;
    const ptLen = this.meta![m + 2]!;
    const stamp = this.stamps ? this.stamps[i]! : 0;
    const total = ring.readUInt32LE(off);
    const tmp = this.scratch !== undefined && this.scratch.length >= total ? this.scratch : (this.scratch = Buffer.allocUnsafeSlow(Math.max(total, 4096)));
    ring.copy(tmp, 0, off, off + total);
    const h = this.prints![i]!;
    this.drop(i); // the old copy becomes dead bytes the tail passes
    const at = this.reserve(total);
    tmp.copy(this.ring!, at, 0, total);
    tmp.fill(0, 0, total);
    this.index(h, at, n, ptLen, stamp);
    this.head += total;
    return at;
  }

  /** Room for `total` bytes at the head (evicting the oldest entries, or growing the ring); returns its offset. */
  private reserve(total: number): number {
    if (this.ring === undefined) {
      const slots = (this.setMask + 1) * WAYS;
      this.ring = Buffer.alloc(Math.min(this.capacity, MIN_RING));
      this.prints = new Int32Array(slots);
      this.starts = new Float64Array(slots);
      this.meta = new Int32Array(slots * META);
      if (this.ttlMs > 0) this.stamps = new Float64Array(slots);
    }
    while (this.count >= this.size) this.evict();
    for (;;) {
      const len = this.ring!.length;
      if (this.head === this.tail) this.head = this.tail = Math.ceil(this.head / len) * len;
      const off = this.head % len;
      const pad = off + total <= len ? 0 : len - off;
      if (this.head + pad + total - this.tail <= len) {
        if (pad === 0) return off;
        this.ring!.writeUInt32LE(pad, off);
        this.ring!.writeUInt32LE(SKIP, off + 4);
        this.head += pad;
        return 0;
      }
      if (len < this.capacity) this.grow();
      else this.evict();
    }
  }

  /** Drops the oldest entry (or padding) at the tail. */
  private evict(): void {
    const ring = this.ring!;
    const off = this.tail % ring.length;
    const total = ring.readUInt32LE(off);
    if (ring.readUInt32LE(off + 4) === LIVE) this.count--;
    ring.fill(0, off, off + total);
    this.tail += total;
  }

  /** Doubles the ring, each live byte to its position modulo the new length (no entry then straddles the end). */
  private grow(): void {
    const old = this.ring!;
    const len = old.length;
    const next = Buffer.alloc(len * 2);
    for (let p = this.tail; p < this.head; ) {
      const o = p % len;
      const run = Math.min(this.head - p, len - o);
      old.copy(next, p % next.length, o, o + run);
      p += run;
    }
    old.fill(0);
    this.ring = next;
    const prints = this.prints!;
    for (let i = 0; i < prints.length; i++) if (prints[i] !== 0) this.meta![i * META] = this.starts![i]! % next.length;
  }

  /** Empties index slot i and marks its entry dead (no longer counted; its bytes wait for the tail). */
  private drop(i: number): void {
    this.prints![i] = 0;
    this.ring!.writeUInt32LE(DEAD, this.meta![i * META]! + 4);
    this.count--;
  }

  /** Points a slot of hash h's set (an empty, stale or the oldest one) at the new entry at the head, ring offset `off`. */
  private index(h: number, off: number, n: number, ptLen: number, stamp: number): void {
    const prints = this.prints!;
    const starts = this.starts!;
    const base = (h & this.setMask) * WAYS;
    let pick = -1;
    for (let i = base; i < base + WAYS; i++) {
      if (prints[i] === 0 || starts[i]! < this.tail) {
        pick = i;
        break;
      }
      if (pick < 0 || starts[i]! < starts[pick]!) pick = i;
    }
    if (prints[pick] !== 0 && starts[pick]! >= this.tail) this.drop(pick); // a full set: its oldest value goes
    prints[pick] = h;
    starts[pick] = this.head;
    const m = pick * META;
    const meta = this.meta!;
    meta[m] = off;
    meta[m + 1] = n;
    meta[m + 2] = ptLen;
    meta[m + 3] = this.seq | 0;
    if (this.stamps) this.stamps[pick] = stamp;
    this.count++;
    this.seq = (this.seq + 1) >>> 0;
  }
}

/**
 * Date.now() read at most every 100 ms: a TTL in seconds needs no finer clock,
 * and a read per value hit cost a tenth of the hit.
 */
let coarseMs = 0;
let ticking = false;
function coarseNow(): number {
  if (!ticking) {
    ticking = true;
    coarseMs = Date.now();
    setInterval(() => {
      coarseMs = Date.now();
    }, 100).unref();
  }
  return coarseMs;
}

/**
 * A 30-bit number from 8 characters of the token's MAC text, just before its
 * final group that may hold padding, with bit 30 set (never 0, the empty slot).
 * A MAC is random-looking, so values spread evenly.
 */
function hashOf(v: Uint8Array, valueStart: number, valueEnd: number): number {
  const end = valueEnd - 4;
  let h = 0;
  for (let i = Math.max(valueStart, end - 8); i < end; i++) h = (Math.imul(h, 31) + v[i]!) | 0;
  return (h & 0x3fffffff) | 0x40000000;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
