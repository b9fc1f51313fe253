// One resolved catalog per database, shared by every session of the proxy.
// Entries belong to a config generation: reloading the config (SIGHUP) bumps it
// and every older entry is dropped. DDL run through the proxy invalidates its
// database. A load that was in flight when its database was invalidated does not
// store its (possibly stale) result. Concurrent misses share one load.
import type { ResolvedCatalog } from './types.js';

interface Entry {
  catalog: ResolvedCatalog;
  generation: number;
  loadedAt: number;
}

export interface CatalogCacheOptions {
  /** Also reload after this long, for DDL that did not pass through the proxy (0 = never). */
  maxAgeMs?: number;
  now?: () => number;
}

export class CatalogCache {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, { epoch: number; promise: Promise<ResolvedCatalog> }>();
  /** Bumped per database on invalidate, so an older in-flight load cannot store. */
  private readonly epochs = new Map<string, number>();
  private gen: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;

  constructor(generation = 0, opts: CatalogCacheOptions = {}) {
    this.gen = generation;
    this.maxAgeMs = opts.maxAgeMs ?? 0;
    this.now = opts.now ?? Date.now;
  }

  get generation(): number {
    return this.gen;
  }

  get(database: string): ResolvedCatalog | undefined {
    const e = this.entries.get(database);
    if (!e) return undefined;
    if (e.generation !== this.gen || (this.maxAgeMs > 0 && this.now() - e.loadedAt > this.maxAgeMs)) {
      this.entries.delete(database);
      return undefined;
    }
    return e.catalog;
  }

  set(database: string, catalog: ResolvedCatalog): void {
    this.entries.set(database, { catalog, generation: this.gen, loadedAt: this.now() });
  }

  /** The cached catalog, or one loaded by `load` (shared by concurrent callers). */
  async getOrLoad(database: string, load: () => Promise<ResolvedCatalog>): Promise<ResolvedCatalog> {
    const hit = this.get(database);
    if (hit) return hit;
    const epoch = this.epoch(database);
    const pending = this.loading.get(database);
    if (pending && pending.epoch === epoch) return pending.promise;
    const gen = this.gen;
    const promise = load().then(
      (catalog) => {
        if (this.loading.get(database)?.promise === promise) this.loading.delete(database);
        if (this.gen === gen && this.epoch(database) === epoch) this.set(database, catalog);
        return catalog;
      },
      (err: unknown) => {
        if (this.loading.get(database)?.promise === promise) this.loading.delete(database);
        throw err;
      },
    );
    this.loading.set(database, { epoch, promise });
    return promise;
  }

  /** After DDL on this database. */
  invalidate(database: string): void {
    this.entries.delete(database);
    this.epochs.set(database, this.epoch(database) + 1);
  }

  /** On SIGHUP / config reload: a new generation; nothing older is served. */
  invalidateAll(generation = this.gen + 1): void {
    this.gen = generation;
    this.entries.clear();
    for (const db of this.loading.keys()) this.epochs.set(db, this.epoch(db) + 1);
  }

  private epoch(database: string): number {
    return this.epochs.get(database) ?? 0;
  }
}
