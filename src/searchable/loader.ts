// Key table <-> memory: creates a key (racing replicas converge on the
// winner's row), unwraps it, checks every wrapping against the key's
// fingerprint, adds the primary KEK's wrapping when missing, and stamps each
// new wrapping with the clock time from which it may be written under.
import type { Db } from '../catalog/db.js';
import { kekIdLabel } from '../crypto/envelope.js';
import { CMEKDecryptionError } from '../crypto/errors.js';
import type { KekBackend, WrappedDek } from '../crypto/kek/types.js';
import type { Logger } from '../log.js';
import { DeterministicKey, dekCheck } from './deterministic.js';
import { GroupKey, makeWrapping, sameKek, type Wrapping } from './group-key.js';
import { insertKey, insertWrap, readKeys, type KeyRow } from './key-table.js';
import { SearchableKeyError, type KekSource } from './types.js';

export class KeyLoader {
  readonly counters = { keysCreated: 0, wrappingsAdded: 0 };
  private readonly backends: KekBackend[];

  constructor(
    private readonly db: Db,
    private readonly kek: KekSource,
    private readonly activationMs: number,
    private readonly clock: () => number,
    private readonly log: Logger,
    private readonly tokenCacheSize = 0,
  ) {
    this.backends = [...new Set([kek.primary, ...kek.readable])];
  }

  /**
   * Brings one key up to date with its key-table row (`found`; undefined: no
   * row yet, so it is created). `loaded` is the key already in memory, if any.
   * Returns the key to use from now on.
   */
  async sync(name: string, found: KeyRow | undefined, loaded: GroupKey | undefined): Promise<GroupKey> {
    let group = loaded;
    let row = found;
    if (!row) {
      if (group) {
        // Never resurrect silently: an operator deleted it, or restored an old dump. Values still decrypt (headers carry the wrappings).
        this.log.error({ key: name }, 'searchable key vanished from the key table; keeping the loaded key');
        return group;
      }
      row = await this.create(name);
    }
    if (group && !group.key.check.equals(row.check)) {
      throw new SearchableKeyError(`searchable key ${name}: the key table now holds another DEK than the one loaded (table restored or replaced?); keeping the loaded key`);
    }
    if (row.bad > 0) this.log.error({ key: name, rows: row.bad }, 'key table rows whose columns disagree with their bytes are ignored');
    group ??= new GroupKey(name, await this.unwrapKey(row), this.clock, this.tokenCacheSize);
    let wraps = await this.wrappingsOf(group, row);
    if (!wraps.some((w) => w.verified && sameKek(w.wrapped, this.primaryKek()))) {
      try {
        await this.addPrimaryWrapping(group);
        const again = (await readKeys(this.db, [name])).get(name);
        if (again) wraps = await this.wrappingsOf(group, again);
      } catch (e) {
        // A KEK or database outage: values keep going under an older wrapping; the next refresh retries.
        this.log.warn({ key: name, kek: this.primaryLabel(), err: e instanceof Error ? e.message : String(e) }, 'could not wrap a searchable key under the primary KEK');
      }
    }
    group.setWrappings(wraps, this.primaryKek());
    if (!group.primaryWrapping()) {
      this.log.error({ key: name, kek: this.primaryLabel() }, 'no usable wrapping under the primary KEK: new values stay under an older KEK');
    }
    return group;
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
      // Known wrappings keep their activation time; one left unverified by a backend outage is checked again.
      if (old && (old.verified || !this.backendFor(old.wrapped))) {
        out.push(old);
        continue;
      }
      const w = old ?? fresh;
      const verdict = await this.verify(group, r.wrapped, w.label);
      if (verdict === 'rejected') continue;
      w.verified = verdict === 'verified';
      out.push(w);
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

  primaryKek(): { tag: number; kekId: Buffer } {
    return { tag: this.kek.primary.tag, kekId: this.kek.primary.primaryKekId() };
  }

  /** e.g. `local:1f2e3d4c5b6a7988` (safe to log). */
  primaryLabel(): string {
    const p = this.kek.primary;
    return `${p.name}:${kekIdLabel(p.tag, p.primaryKekId())}`;
  }
}

function unwrapWith(b: KekBackend, w: WrappedDek): Promise<Buffer> | Buffer {
  return b.unwrapSync ? b.unwrapSync(w) : b.unwrap(w);
}
