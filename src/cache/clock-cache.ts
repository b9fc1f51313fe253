// A bounded map with CLOCK (second-chance) eviction, for the proxy's hot caches
// (statement analyses, statement shapes, decrypted values, DEKs).
//
// Why not the usual JS LRU, a Map in insertion order with delete + set on each
// hit and `keys().next()` for the oldest? V8's ordered hash table leaves a
// deleted entry in its bucket chain until the next rehash, so moving the same
// hot key to the end again and again lengthens the chain every lookup of that
// key then walks; and `keys().next()` first skips the holes earlier deletes left
// at the front. Measured on Node 20 and 24 (bench/cache.ts): a hit cost 2.7 µs
// at 2,048 entries and 26 µs at 10,000; a FIFO eviction 1.4 µs at 2,048 and 8 µs
// at 10,000. Here a hit sets one bit and never touches the Map; a miss that
// evicts advances a hand over a ring of slots and deletes one other key.
//
// CLOCK approximates LRU: an entry read since the hand last passed it gets a
// second chance; one never read again since it went in goes first.

export interface ClockCacheOptions<K, V> {
  /** Most entries kept (0 = keep nothing). */
  maxEntries: number;
  /** Optional bound on the sum of `weigh()` over the entries (bytes, say). */
  maxWeight?: number;
  weigh?: (key: K, value: V) => number;
  /** Called for each entry that leaves (evicted, replaced, deleted, cleared): zero a key, count it. */
  onEvict?: (key: K, value: V) => void;
}

export class ClockCache<K, V> {
  private readonly slotOf = new Map<K, number>();
  private readonly keys: (K | undefined)[] = [];
  private readonly values: (V | undefined)[] = [];
  private readonly weights: number[] = [];
  /** Grows with the ring (a bound like 1e9 must not allocate up front). */
  private used: Uint8Array;
  /** Slots emptied by delete() or by a weight eviction, reused before the ring grows. */
  private readonly free: number[] = [];
  private hand = 0;
  private weight = 0;
  private readonly maxEntries: number;
  private readonly maxWeight: number;

  constructor(private readonly o: ClockCacheOptions<K, V>) {
    this.maxEntries = Math.max(0, Math.floor(o.maxEntries));
    this.maxWeight = o.maxWeight ?? Infinity;
    this.used = new Uint8Array(Math.min(this.maxEntries, 64));
  }

  get size(): number {
    return this.slotOf.size;
  }

  /** The sum of the entries' weights (0 without `weigh`). */
  get totalWeight(): number {
    return this.weight;
  }

  /** The value, marked as used (it survives the hand's next pass). */
  get(key: K): V | undefined {
    const i = this.slotOf.get(key);
    if (i === undefined) return undefined;
    this.used[i] = 1;
    return this.values[i];
  }

  /** The value, without marking it used. */
  peek(key: K): V | undefined {
    const i = this.slotOf.get(key);
    return i === undefined ? undefined : this.values[i];
  }

  has(key: K): boolean {
    return this.slotOf.has(key);
  }

  /** Adds or replaces; evicts what the bounds require (never the entry just set, unless it alone exceeds maxWeight). */
  set(key: K, value: V): void {
    if (this.maxEntries === 0) {
      this.o.onEvict?.(key, value);
      return;
    }
    const w = this.o.weigh ? this.o.weigh(key, value) : 0;
    if (w > this.maxWeight) {
      this.delete(key);
      this.o.onEvict?.(key, value);
      return;
    }
    let i = this.slotOf.get(key);
    if (i !== undefined) {
      const old = this.values[i]!;
      this.weight += w - this.weights[i]!;
      this.values[i] = value;
      this.weights[i] = w;
      this.used[i] = 1;
      if (old !== value) this.o.onEvict?.(key, old);
    } else {
      i = this.free.pop();
      if (i === undefined) i = this.keys.length < this.maxEntries ? this.grow() : this.evictOne();
      this.keys[i] = key;
      this.values[i] = value;
      this.weights[i] = w;
      this.used[i] = 0;
      this.weight += w;
      this.slotOf.set(key, i);
    }
    while (this.weight > this.maxWeight) this.free.push(this.evictOne(i));
  }

  delete(key: K): boolean {
    const i = this.slotOf.get(key);
    if (i === undefined) return false;
    const v = this.values[i]!;
    this.release(i);
    this.free.push(i);
    this.o.onEvict?.(key, v);
    return true;
  }

  clear(): void {
    const evict = this.o.onEvict;
    const entries = evict ? [...this.entries()] : [];
    this.slotOf.clear();
    this.keys.length = 0;
    this.values.length = 0;
    this.weights.length = 0;
    this.free.length = 0;
    this.used.fill(0);
    this.hand = 0;
    this.weight = 0;
    for (const [k, v] of entries) evict!(k, v);
  }

  *entries(): IterableIterator<[K, V]> {
    for (const [k, i] of this.slotOf) yield [k, this.values[i]!];
  }

  /** A new slot at the end of the ring. */
  private grow(): number {
    const i = this.keys.length;
    if (i === this.used.length) {
      const next = new Uint8Array(Math.min(this.maxEntries, i * 2));
      next.set(this.used);
      this.used = next;
    }
    return i;
  }

  /** Frees the slot the hand settles on (passing over used entries once), skipping `keep`; returns it. */
  private evictOne(keep = -1): number {
    const n = this.keys.length;
    // Two turns at most: the first clears every used bit it passes.
    for (let step = 0; step < 2 * n + 1; step++) {
      const i = this.hand;
      this.hand = i + 1 === n ? 0 : i + 1;
      if (i === keep || this.keys[i] === undefined) continue;
      if (this.used[i]) {
        this.used[i] = 0;
        continue;
      }
      const k = this.keys[i]!;
      const v = this.values[i]!;
      this.release(i);
      this.o.onEvict?.(k, v);
      return i;
    }
    throw new Error('ClockCache: no entry to evict');
  }

  private release(i: number): void {
    this.slotOf.delete(this.keys[i]!);
    this.weight -= this.weights[i]!;
    this.keys[i] = undefined;
    this.values[i] = undefined;
    this.weights[i] = 0;
    this.used[i] = 0;
  }
}
