// SearchableKeys: the column DEKs of every configured searchable column, loaded
// (or created) from the shared key table at startup, kept in memory, refreshed
// on demand or on a timer. Once loaded, encrypting and building equality
// candidates are synchronous and need no KEK call.
// Invariants:
//  - ONE DEK per key: replicas race through the key table's primary keys and
//    re-read; a wrapping that does not unwrap to the key's fingerprint is never used.
//  - a wrapping added under a new KEK is written under only after an activation
//    delay, so every replica (refreshing more often than that) lists it among
//    its lookup candidates before any value carries it.
import { performance } from 'node:perf_hooks';
import type { Db } from '../catalog/db.js';
import { isEnvelope } from '../crypto/envelope.js';
import type { Keyring } from '../crypto/keyring.js';
import { log as rootLog, type Logger } from '../log.js';
import { SearchableColumnKey } from './column-key.js';
import { seal, type GroupKey, type Wrapping } from './group-key.js';
import { ensureKeyTables, readKeys } from './key-table.js';
import { KeyLoader } from './loader.js';
import { columnId, displayColumn, keyNameOf, SearchableKeyError, type ColumnRef, type KekSource, type SearchableColumn } from './types.js';

export const DEFAULT_REFRESH_MS = 10_000;
export const DEFAULT_ACTIVATION_MS = 30_000;
/** Candidates per compared value in a prepared statement: a rotation (2 KEKs) plus one spare. */
export const DEFAULT_CANDIDATE_SLOTS = 3;
/** Recent plaintexts per key whose tokens are kept (about 300 bytes each). */
export const DEFAULT_TOKEN_CACHE = 10_000;

export interface SearchableKeysOptions {
  db: Db;
  kek: KekSource;
  columns: SearchableColumn[];
  /** Decrypts values not under a column key (randomly encrypted before the column became searchable) during rewrap. */
  keyring?: Keyring;
  /** Create the key tables when missing (default true; false when the operator pre-creates them). */
  createTables?: boolean;
  /** How long a new wrapping waits before values are written under it. Keep it above 2 x refreshMs. */
  activationDelayMs?: number;
  /** Period of startAutoRefresh(). */
  refreshMs?: number;
  /** Fixed candidates per value for prepared statements (see SearchableColumnKey.slots). */
  candidateSlots?: number;
  /** Plaintexts per key whose tokens are cached (default DEFAULT_TOKEN_CACHE; 0 = none). See TokenCache. */
  tokenCacheSize?: number;
  /** Monotonic milliseconds (tests). */
  clock?: () => number;
  log?: Logger;
}

export interface SearchableKeysStats {
  keys: number;
  wrappings: number;
  refreshes: number;
  refreshFailures: number;
  keysCreated: number;
  wrappingsAdded: number;
  /** Token cache (plaintext -> token) hits and misses, over every key. */
  tokenCacheHits: number;
  tokenCacheMisses: number;
  /** Since the last successful refresh; a replica that cannot refresh may miss values written under a new KEK. */
  lastRefreshAgeMs: number;
}

/** What `describe()` reports per key (no key material). */
export interface KeyDescription {
  keyName: string;
  columns: string[];
  wrappings: { kek: string; verified: boolean; active: boolean; primary: boolean; write: boolean }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export { SearchableColumnKey };

export class SearchableKeys {
  private readonly db: Db;
  private readonly loader: KeyLoader;
  private readonly keyring: Keyring | undefined;
  private readonly specs: SearchableColumn[];
  private readonly refreshMs: number;
  /** Candidates per compared value in rewritten prepared statements. */
  readonly candidateSlots: number;
  private readonly clock: () => number;
  private readonly log: Logger;
  private readonly groups = new Map<string, GroupKey>();
  private readonly handles = new Map<string, SearchableColumnKey>();
  /** Handles found by `column()`, by the reference object asked with (handles are never replaced). */
  private byRef = new WeakMap<ColumnRef, SearchableColumnKey>();
  private refreshing?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private lastRefreshAt = -Infinity;
  private counters = { refreshes: 0, refreshFailures: 0 };

  private constructor(o: SearchableKeysOptions) {
    this.db = o.db;
    this.keyring = o.keyring;
    this.refreshMs = o.refreshMs ?? DEFAULT_REFRESH_MS;
    this.candidateSlots = Math.max(1, Math.floor(o.candidateSlots ?? DEFAULT_CANDIDATE_SLOTS));
    this.clock = o.clock ?? (() => performance.now());
    this.log = (o.log ?? rootLog()).child({ component: 'searchable' });
    this.loader = new KeyLoader(o.db, o.kek, o.activationDelayMs ?? DEFAULT_ACTIVATION_MS, this.clock, this.log, o.tokenCacheSize ?? DEFAULT_TOKEN_CACHE);
    const seen = new Set<string>();
    for (const c of o.columns) {
      const id = columnId(c);
      if (seen.has(id)) throw new SearchableKeyError(`searchable column ${displayColumn(c)} is configured twice`);
      seen.add(id);
    }
    this.specs = [...o.columns];
  }

  /** Loads (creating where needed) every configured column's key. Throws SearchableKeyError: the proxy must not start. */
  static async load(o: SearchableKeysOptions): Promise<SearchableKeys> {
    const k = new SearchableKeys(o);
    if (k.specs.length === 0) return k;
    if (o.createTables !== false) await ensureKeyTables(o.db);
    await k.refresh();
    return k;
  }

  // ---- hot path (sync) ------------------------------------------------------

  /** The column's handle, or undefined when it is not a configured searchable column. */
  column(ref: ColumnRef): SearchableColumnKey | undefined {
    // The proxy asks with the same (immutable) target objects of its cached plans at every
    // statement: remembered by object, which spares building the id string each time.
    let h = this.byRef.get(ref);
    if (h === undefined) {
      h = this.handles.get(columnId(ref));
      if (h) this.byRef.set(ref, h);
    }
    return h;
  }

  encryptDeterministic(ref: ColumnRef, plaintext: Buffer): Buffer {
    return this.require(ref).encrypt(plaintext);
  }

  equalityCandidates(ref: ColumnRef, plaintext: Buffer): Buffer[] {
    return this.require(ref).candidates(plaintext);
  }

  /** `candidateSlots` candidates (padded), for the bind parameters of a rewritten prepared statement. */
  equalitySlots(ref: ColumnRef, plaintext: Buffer): Buffer[] {
    return this.require(ref).slots(plaintext);
  }

  /** True for an envelope that is not under the column's primary-KEK header (rotation must rewrite it). */
  needsRewrap(ref: ColumnRef, value: string | Buffer): boolean {
    const h = this.require(ref);
    const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    if (!isEnvelope(v)) return false;
    const p = h.group.primaryWrapping();
    return !p || h.group.wrappingOf(v) !== p;
  }

  private require(ref: ColumnRef): SearchableColumnKey {
    const h = this.handles.get(columnId(ref));
    if (!h) throw new SearchableKeyError(`${displayColumn(ref)} is not a loaded searchable column`);
    return h;
  }

  // ---- rotation ---------------------------------------------------------------

  /**
   * The value under the column's primary-KEK header. For a value under one of
   * the column's headers, parts 1–2 are swapped and the token is kept (it is
   * authenticated first). A value under no column header (random encryption
   * from before the column was searchable) is decrypted with the keyring and
   * encrypted deterministically. Legacy plaintext is returned as-is. Creates the
   * primary-KEK wrapping if missing and waits until it is active (`wait: false`:
   * throws instead).
   */
  async rewrapSearchable(ref: ColumnRef, value: string, opts: { wait?: boolean } = {}): Promise<string> {
    const h = this.require(ref);
    if (!isEnvelope(value)) return value;
    const target = await this.writableWrapping(h.group, opts.wait ?? true);
    const v = Buffer.from(value, 'utf8');
    const w = h.group.wrappingOf(v);
    if (w === target) return value;
    let pt: Buffer;
    if (w) {
      pt = h.group.open(v, w);
    } else {
      if (!this.keyring) {
        throw new SearchableKeyError(`a value of ${displayColumn(ref)} is not under its searchable key and no keyring was given to re-encrypt it`);
      }
      pt = await this.keyring.decryptBytes(v);
    }
    try {
      if (pt.length === 0 && !h.column.encryptEmpty) return '';
      const token = h.group.key.token(pt);
      if (w && v.toString('latin1', v.lastIndexOf(0x7c) + 1) !== token) {
        this.log.warn({ key: h.keyName }, 'a searchable value had a non-deterministic token; re-encrypted deterministically');
      }
      return seal(target.header, token).toString('latin1');
    } finally {
      pt.fill(0);
    }
  }

  /** The primary-KEK wrapping of a key once it may be written under (created and waited for if needed). */
  private async writableWrapping(group: GroupKey, wait: boolean): Promise<Wrapping> {
    let p = group.primaryWrapping();
    if (!p) {
      await this.refresh();
      p = group.primaryWrapping();
    }
    if (!p) throw new SearchableKeyError(`searchable key ${group.name} has no usable wrapping under the primary KEK ${this.loader.primaryLabel()}`);
    for (;;) {
      const left = p.activeAt - this.clock();
      if (left <= 0) return p;
      if (!wait) {
        throw new SearchableKeyError(
          `the wrapping of searchable key ${group.name} under ${p.label} becomes active in ${Math.ceil(left / 1000)} s (other replicas must learn it first); retry then`,
        );
      }
      await sleep(Math.min(left, 1000));
    }
  }

  // ---- loading and refreshing -------------------------------------------------

  /** Re-reads the key table: new wrappings (rotation on another replica), a missing primary-KEK wrapping (created). */
  refresh(): Promise<void> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** Refreshes every refreshMs until close(); failures are logged and counted (stats). */
  startAutoRefresh(): void {
    if (this.timer || this.specs.length === 0) return;
    this.timer = setInterval(() => {
      this.refresh().catch((e: unknown) => {
        this.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'searchable key refresh failed');
      });
    }, this.refreshMs);
    this.timer.unref();
  }

  private async doRefresh(): Promise<void> {
    const names = [...new Set(this.specs.map((c) => keyNameOf(c)))];
    let failure: SearchableKeyError | undefined;
    try {
      const rows = await readKeys(this.db, names);
      for (const name of names) {
        try {
          this.groups.set(name, await this.loader.sync(name, rows.get(name), this.groups.get(name)));
        } catch (e) {
          failure ??= asKeyError(e, `searchable key ${name} could not be loaded`);
          this.log.error({ key: name, err: e instanceof Error ? e.message : String(e) }, 'searchable key could not be loaded');
        }
      }
    } catch (e) {
      failure = asKeyError(e, 'the searchable key table could not be read');
    }
    for (const c of this.specs) {
      const g = this.groups.get(keyNameOf(c));
      if (g && !this.handles.has(columnId(c))) this.handles.set(columnId(c), new SearchableColumnKey(c, g, this.candidateSlots));
    }
    if (failure !== undefined) {
      this.counters.refreshFailures++;
      throw failure;
    }
    this.counters.refreshes++;
    this.lastRefreshAt = this.clock();
  }

  // ---- reporting and shutdown -------------------------------------------------

  describe(): KeyDescription[] {
    const now = this.clock();
    return [...this.groups.values()].map((g) => {
      let write: Wrapping | undefined;
      try {
        write = g.writeWrapping();
      } catch {
        write = undefined; // no usable wrapping: reported as no `write: true`
      }
      return {
        keyName: g.name,
        columns: this.specs.filter((c) => keyNameOf(c) === g.name).map(displayColumn),
        wrappings: g.wrappings().map((w) => ({
          kek: w.label,
          verified: w.verified,
          active: w.activeAt <= now,
          primary: w === g.primaryWrapping(),
          write: w === write,
        })),
      };
    });
  }

  stats(): SearchableKeysStats {
    let wrappings = 0;
    let tokenCacheHits = 0;
    let tokenCacheMisses = 0;
    for (const g of this.groups.values()) {
      wrappings += g.wrappings().length;
      const c = g.cacheStats();
      tokenCacheHits += c.hits;
      tokenCacheMisses += c.misses;
    }
    return {
      keys: this.groups.size,
      wrappings,
      ...this.counters,
      ...this.loader.counters,
      tokenCacheHits,
      tokenCacheMisses,
      lastRefreshAgeMs: this.clock() - this.lastRefreshAt,
    };
  }

  /** Stops the refresh timer and zeroes every column key. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.refreshing?.catch(() => {});
    for (const g of this.groups.values()) g.destroy();
    this.groups.clear();
    this.handles.clear();
    this.byRef = new WeakMap();
  }
}

function asKeyError(e: unknown, what: string): SearchableKeyError {
  if (e instanceof SearchableKeyError) return e;
  return new SearchableKeyError(`${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}
