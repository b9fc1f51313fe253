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
import { isEnvelope, kekIdLabel } from '../crypto/envelope.js';
import { CMEKDecryptionError } from '../crypto/errors.js';
import type { KekBackend, WrappedDek } from '../crypto/kek/types.js';
import type { Keyring } from '../crypto/keyring.js';
import { log as rootLog, type Logger } from '../log.js';
import { DeterministicKey, dekCheck } from './deterministic.js';
import { GroupKey, makeWrapping, sameKek, seal, type Wrapping } from './group-key.js';
import { ensureKeyTables, insertKey, insertWrap, readKeys, type KeyRow } from './key-table.js';
import { columnId, displayColumn, keyNameOf, SearchableKeyError, type ColumnRef, type KekSource, type SearchableColumn } from './types.js';

export const DEFAULT_REFRESH_MS = 10_000;
export const DEFAULT_ACTIVATION_MS = 30_000;
/** Candidates per compared value in a prepared statement: a rotation (2 KEKs) plus one spare. */
export const DEFAULT_CANDIDATE_SLOTS = 3;

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
  /** Since the last successful refresh; a replica that cannot refresh may miss values written under a new KEK. */
  lastRefreshAgeMs: number;
}

/** What `describe()` reports per key (no key material). */
export interface KeyDescription {
  keyName: string;
  columns: string[];
  wrappings: { kek: string; verified: boolean; active: boolean; primary: boolean; write: boolean }[];
}

/** One searchable column's handle: resolve it once per statement, then call it per value. */
export class SearchableColumnKey {
  constructor(
    readonly column: SearchableColumn,
    readonly group: GroupKey,
    /** How many candidates `slots()` returns. */
    readonly slotCount: number,
  ) {}

  get keyName(): string {
    return this.group.name;
  }

  /** Empty strings stay empty unless the column encrypts them (as for ordinary columns). */
  private keepsPlain(pt: Buffer): boolean {
    return pt.length === 0 && !this.column.encryptEmpty;
  }

  /** The stored value for this plaintext (an envelope under the current write KEK). */
  encrypt(pt: Buffer): Buffer {
    return this.keepsPlain(pt) ? pt : this.group.encrypt(pt);
  }

  /**
   * Every stored form this plaintext can have: one per KEK with a wrapping of
   * the column DEK. For literals and other one-off SQL text.
   */
  candidates(pt: Buffer): Buffer[] {
    return this.keepsPlain(pt) ? [pt] : this.group.candidates(pt);
  }

  /**
   * Exactly `slotCount` candidates (the real ones, then repeats of the first),
   * for bind parameters of a rewritten prepared statement:
   * `col IN ($a, $b, $c)`. A fixed arity keeps Postgres' generic plan (an
   * array parameter `= ANY($k::text[])` is re-planned at every execution and
   * costs about 40% of the lookup rate; docs/SEARCHABLE.md "Performance").
   * Throws SearchableKeyError (55000) when the key has more wrappings than slots.
   */
  slots(pt: Buffer): Buffer[] {
    if (this.keepsPlain(pt)) return new Array<Buffer>(this.slotCount).fill(pt);
    return this.group.candidates(pt, this.slotCount);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class SearchableKeys {
  private readonly db: Db;
  private readonly kek: KekSource;
  private readonly backends: KekBackend[];
  private readonly keyring: Keyring | undefined;
  private readonly specs: SearchableColumn[];
  private readonly activationMs: number;
  private readonly refreshMs: number;
  /** Candidates per compared value in rewritten prepared statements. */
  readonly candidateSlots: number;
  private readonly clock: () => number;
  private readonly log: Logger;
  private readonly groups = new Map<string, GroupKey>();
  private readonly handles = new Map<string, SearchableColumnKey>();
  private refreshing?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private lastRefreshAt = -Infinity;
  private counters = { refreshes: 0, refreshFailures: 0, keysCreated: 0, wrappingsAdded: 0 };

  private constructor(o: SearchableKeysOptions) {
    this.db = o.db;
    this.kek = o.kek;
    this.backends = [...new Set([o.kek.primary, ...o.kek.readable])];
    this.keyring = o.keyring;
    this.activationMs = o.activationDelayMs ?? DEFAULT_ACTIVATION_MS;
    this.refreshMs = o.refreshMs ?? DEFAULT_REFRESH_MS;
    this.candidateSlots = Math.max(1, Math.floor(o.candidateSlots ?? DEFAULT_CANDIDATE_SLOTS));
    this.clock = o.clock ?? (() => performance.now());
    this.log = (o.log ?? rootLog()).child({ component: 'searchable' });
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
    return this.handles.get(columnId(ref));
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
    if (!p) throw new SearchableKeyError(`searchable key ${group.name} has no usable wrapping under the primary KEK ${this.primaryLabel()}`);
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
    let failure: unknown;
    try {
      const rows = await readKeys(this.db, names);
      for (const name of names) {
        try {
          await this.sync(name, rows.get(name));
        } catch (e) {
          failure ??= e;
          this.log.error({ key: name, err: e instanceof Error ? e.message : String(e) }, 'searchable key could not be loaded');
        }
      }
    } catch (e) {
      failure = e;
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

  private async sync(name: string, found: KeyRow | undefined): Promise<void> {
    let group = this.groups.get(name);
    let row = found;
    if (!row) {
      if (group) {
        // Never resurrect silently: an operator deleted it, or restored an old dump. Values still decrypt (headers carry the wrappings).
        this.log.error({ key: name }, 'searchable key vanished from the key table; keeping the loaded key');
        return;
      }
      row = await this.create(name);
    }
    if (group && !group.key.check.equals(row.check)) {
      throw new SearchableKeyError(`searchable key ${name}: the key table now holds another DEK than the one loaded (table restored or replaced?); keeping the loaded key`);
    }
    if (row.bad > 0) this.log.error({ key: name, rows: row.bad }, 'key table rows whose columns disagree with their bytes are ignored');
    if (!group) {
      group = new GroupKey(name, await this.unwrapKey(row), this.clock);
      this.groups.set(name, group);
    }
    let wraps = await this.wrappingsOf(group, row);
    if (!wraps.some((w) => w.verified && sameKek(w.wrapped, this.primaryKek()))) {
      await this.addPrimaryWrapping(group);
      const again = (await readKeys(this.db, [name])).get(name);
      if (again) wraps = await this.wrappingsOf(group, again);
    }
    group.setWrappings(wraps, this.primaryKek());
    if (!group.primaryWrapping()) {
      this.log.error({ key: name, kek: this.primaryLabel() }, 'the key table wrapping under the primary KEK does not unwrap to this key: new values stay under an older KEK');
    }
  }

  /** A new key: a fresh DEK wrapped by the primary KEK, inserted with its first wrapping; the winner of a race is read back. */
  private async create(name: string): Promise<KeyRow> {
    const g = await this.kek.primary.generateDek();
    let check: Buffer;
    try {
      check = dekCheck(g.dek);
    } finally {
      g.dek.fill(0);
    }
    if (await insertKey(this.db, name, check, g.wrapped)) {
      this.counters.keysCreated++;
      this.log.info({ key: name, kek: this.primaryLabel() }, 'created searchable column key');
    }
    const row = (await readKeys(this.db, [name])).get(name);
    if (!row) throw new SearchableKeyError(`searchable key ${name} could not be created or read back`);
    return row;
  }

  private async unwrapKey(row: KeyRow): Promise<DeterministicKey> {
    const primary = this.primaryKek();
    const order = [...row.wraps].sort((a, b) => Number(sameKek(b.wrapped, primary)) - Number(sameKek(a.wrapped, primary)));
    const tried: string[] = [];
    for (const r of order) {
      const label = makeWrapping(r.wrapped, false, 0).label;
      const b = this.backendFor(r.wrapped);
      if (!b) {
        tried.push(`${label}: not configured here`);
        continue;
      }
      let dek: Buffer;
      try {
        dek = await unwrapWith(b, r.wrapped);
      } catch (e) {
        tried.push(`${label}: ${e instanceof Error ? e.message : String(e)}`);
        continue;
      }
      try {
        const key = new DeterministicKey(dek);
        if (key.check.equals(row.check)) return key;
        key.destroy();
        tried.push(`${label}: unwraps to another DEK than the key's fingerprint`);
      } finally {
        dek.fill(0);
      }
    }
    const why = row.wraps.length === 0 ? 'it has no wrapping' : `no wrapping could be unwrapped (${tried.join('; ')})`;
    throw new SearchableKeyError(`cannot load searchable key ${row.keyName}: ${why}; configure one of its KEKs as readable`);
  }

  /** The key table rows as Wrappings, reusing what is already known (its verification and activation time). */
  private async wrappingsOf(group: GroupKey, row: KeyRow): Promise<Wrapping[]> {
    const known = new Map(group.wrappings().map((w) => [w.id, w]));
    const out: Wrapping[] = [];
    const now = this.clock();
    for (const r of row.wraps) {
      const fresh = makeWrapping(r.wrapped, false, r.withKey ? -Infinity : now + Math.max(0, this.activationMs - r.ageMs));
      const old = known.get(fresh.id);
      if (old) {
        out.push(old);
        continue;
      }
      const verdict = await this.verify(group, r.wrapped, fresh.label);
      if (verdict === 'rejected') continue;
      fresh.verified = verdict === 'verified';
      out.push(fresh);
    }
    return out;
  }

  /** Unwraps a wrapping where this replica can; a wrapping of another DEK is rejected (never used). */
  private async verify(group: GroupKey, w: WrappedDek, label: string): Promise<'verified' | 'unverified' | 'rejected'> {
    const b = this.backendFor(w);
    if (!b) return 'unverified'; // a KEK only other replicas hold: still a lookup candidate
    let dek: Buffer;
    try {
      dek = await unwrapWith(b, w);
    } catch (e) {
      if (e instanceof CMEKDecryptionError && e.reason === 'unwrap_failed') {
        this.log.error({ key: group.name, kek: label }, 'a key table wrapping does not unwrap (altered row): ignored');
        return 'rejected';
      }
      this.log.warn({ key: group.name, kek: label, err: e instanceof Error ? e.message : String(e) }, 'could not verify a key table wrapping');
      return 'unverified';
    }
    try {
      if (group.key.matches(dek)) return 'verified';
      this.log.error({ key: group.name, kek: label }, 'a key table wrapping holds another DEK than its key: ignored');
      return 'rejected';
    } finally {
      dek.fill(0);
    }
  }

  private async addPrimaryWrapping(group: GroupKey): Promise<void> {
    const dek = group.key.dek();
    let w: WrappedDek;
    try {
      w = await this.kek.primary.wrap(dek);
    } finally {
      dek.fill(0);
    }
    if (await insertWrap(this.db, group.name, w)) {
      this.counters.wrappingsAdded++;
      this.log.info({ key: group.name, kek: this.primaryLabel(), activeInMs: this.activationMs }, 'wrapped searchable column key under the primary KEK');
    }
  }

  private backendFor(w: WrappedDek): KekBackend | undefined {
    return this.backends.find((b) => b.tag === w.tag && b.hasKek(w.kekId));
  }

  private primaryKek(): { tag: number; kekId: Buffer } {
    return { tag: this.kek.primary.tag, kekId: this.kek.primary.primaryKekId() };
  }

  private primaryLabel(): string {
    const p = this.kek.primary;
    return `${p.name}:${kekIdLabel(p.tag, p.primaryKekId())}`;
  }

  // ---- reporting and shutdown -------------------------------------------------

  describe(): KeyDescription[] {
    const now = this.clock();
    return [...this.groups.values()].map((g) => {
      const write = g.wrappings().length ? g.writeWrapping() : undefined;
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
    for (const g of this.groups.values()) wrappings += g.wrappings().length;
    return { keys: this.groups.size, wrappings, ...this.counters, lastRefreshAgeMs: this.clock() - this.lastRefreshAt };
  }

  /** Stops the refresh timer and zeroes every column key. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.refreshing?.catch(() => {});
    for (const g of this.groups.values()) g.destroy();
    this.groups.clear();
    this.handles.clear();
  }
}

function unwrapWith(b: KekBackend, w: WrappedDek): Promise<Buffer> | Buffer {
  return b.unwrapSync ? b.unwrapSync(w) : b.unwrap(w);
}
