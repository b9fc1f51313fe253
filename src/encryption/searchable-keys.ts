// The searchable column keys of each database the proxy serves (src/searchable
// SearchableKeys), shared by every session of that database, like the catalog.
// The proxy has no connection of its own: a session lends its upstream
// connection (session-db.ts, on a statement of its own) at an idle point — between two of the client's
// batches, nothing pending, no transaction open — so key-table writes never
// join a client's transaction. The first such
// point loads the keys (creating the key tables and keys when missing); later
// ones refresh them every refreshMs (a rotation on another replica adds a
// wrapping every lookup must list). A database without any configured
// searchable table is left alone: no schema is created there.
import type { ResolvedCatalog } from '../catalog/types.js';
import type { Db } from '../catalog/db.js';
import type { Keyring } from '../crypto/keyring.js';
import type { Logger } from '../log.js';
import type { InterceptContext } from '../proxy/interceptor.js';
import { SearchableKeys } from '../searchable/keys.js';
import { SearchableKeyError, type SearchableColumn } from '../searchable/types.js';
import { SessionDb } from './session-db.js';

/** The statement and portal the key maintenance runs on (reserved: a client statement of this name would be closed). */
const SEARCHABLE_STATEMENT = '__pgcmek_searchable_keys';

export interface SearchableOptions {
  /** How often a database's keys are re-read (default 10 s). */
  refreshMs?: number;
  /** How long a new KEK wrapping waits before values are written under it (default 30 s; keep > 2 × refreshMs). */
  activationDelayMs?: number;
  /** Candidates per compared value in prepared statements (default 3). */
  candidateSlots?: number;
  /** Recent plaintexts per key whose tokens are cached (default 10,000; 0 = none). */
  tokenCacheSize?: number;
  /** A load or refresh that takes longer is abandoned (default 15 s). */
  timeoutMs?: number;
  /** After a failed load, wait this long before the next attempt (default 5 s). */
  retryMs?: number;
}

const DEFAULTS = { refreshMs: 10_000, timeoutMs: 15_000, retryMs: 5_000 };

/** A Db over whichever session lent its connection; queries fail fast when none has. */
class LentDb implements Db {
  private lender: { owner: object; db: SessionDb } | undefined;
  private readonly pending = new Set<(e: Error) => void>();

  lend(owner: object, db: SessionDb): void {
    this.lender = { owner, db };
  }

  /** The lender stops lending; with `reason`, its unanswered queries fail now (the session closed). */
  release(owner: object, reason?: Error): void {
    if (this.lender?.owner !== owner) return;
    this.lender = undefined;
    if (reason) for (const fail of [...this.pending]) fail(reason);
    this.pending.clear();
  }

  owns(owner: object): boolean {
    return this.lender?.owner === owner;
  }

  query(sql: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }> {
    const l = this.lender;
    if (!l) return Promise.reject(new Error('no idle session connection to reach the searchable key table'));
    return new Promise((resolve, reject) => {
      const fail = (e: Error) => reject(e);
      this.pending.add(fail);
      l.db.query(sql, params).then(
        (r) => {
          this.pending.delete(fail);
          resolve(r);
        },
        (e: unknown) => {
          this.pending.delete(fail);
          reject(e);
        },
      );
    });
  }
}

interface Entry {
  keys?: SearchableKeys;
  /** Why the last load failed (statements on searchable columns are refused with it). */
  error?: Error;
  retryAt: number;
  nextRefreshAt: number;
  /** When the keys were last read successfully. */
  refreshedAt: number;
  /** A load or refresh in progress, over `db`'s lender. */
  busy?: Promise<void>;
  readonly db: LentDb;
}

export class SearchableRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly withTables = new WeakMap<ResolvedCatalog, boolean>();
  private readonly opts: Required<Pick<SearchableOptions, 'refreshMs' | 'timeoutMs' | 'retryMs'>> & SearchableOptions;

  constructor(
    readonly columns: readonly SearchableColumn[],
    private readonly keyring: Keyring,
    private readonly log: Logger,
    options: SearchableOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    this.opts = { ...DEFAULTS, ...options };
  }

  get enabled(): boolean {
    return this.columns.length > 0;
  }

  /** The loaded keys of a database, if any. */
  keysFor(database: string): SearchableKeys | undefined {
    return this.entries.get(database)?.keys;
  }

  /** Why a database's keys are not there, for the refusal message. */
  problem(database: string): string {
    const e = this.entries.get(database);
    if (e?.error) return e.error.message;
    if (e?.busy) return 'its searchable keys are still loading; retry';
    return 'its searchable keys load when a session of the database is idle outside a transaction; retry the statement (outside a transaction)';
  }

  /**
   * Called at a session's idle point (no request pending, no transaction open).
   * Returns a Promise when the session must wait: it lends its connection to
   * load or refresh the keys, or another session's first load is in progress.
   */
  maintain(database: string, owner: object, ctx: InterceptContext, catalog: ResolvedCatalog | undefined): Promise<void> | undefined {
    if (!this.enabled) return undefined;
    let e = this.entries.get(database);
    const now = this.now();
    if (e?.keys) {
      // Keys older than two periods (the database was idle): wait for the refresh in progress
      // rather than look up with a list that may lack a KEK another replica now writes under.
      if (e.busy) return now - e.refreshedAt > 2 * this.opts.refreshMs ? e.busy.catch(() => {}) : undefined;
      if (now < e.nextRefreshAt) return undefined;
      e.nextRefreshAt = now + this.opts.refreshMs;
      const entry = e;
      const keys = e.keys;
      return this.run(e, owner, ctx, () => keys.refresh()).then(
        () => {
          entry.refreshedAt = this.now();
        },
        (err: unknown) => {
          this.log.warn({ database, err: (err as Error).message }, 'searchable key refresh failed; the loaded keys keep working');
        },
      );
    }
    if (e?.busy) return e.busy.catch(() => {});
    if ((e && now < e.retryAt) || !catalog || !this.hasTables(catalog)) return undefined;
    if (!e) this.entries.set(database, (e = { retryAt: 0, nextRefreshAt: 0, refreshedAt: 0, db: new LentDb() }));
    const entry = e;
    return this.run(entry, owner, ctx, () => this.load(entry)).then(
      () => {
        entry.error = undefined;
        entry.refreshedAt = this.now();
        entry.nextRefreshAt = entry.refreshedAt + this.opts.refreshMs;
        this.log.info({ database, keys: entry.keys?.stats().keys }, 'searchable column keys loaded');
      },
      (err: unknown) => {
        const error = err instanceof Error ? err : new Error(String(err));
        const interrupted = error instanceof SessionGone;
        if (!interrupted && entry.error?.message !== error.message) {
          this.log.error({ database, err: error.message }, 'searchable column keys could not be loaded; statements on searchable columns are refused');
        }
        if (!interrupted) entry.error = error;
        entry.retryAt = interrupted ? 0 : this.now() + this.opts.retryMs;
      },
    );
  }

  /** The session ended: fail what it was doing for the registry (another session retries). */
  sessionClosed(owner: object): void {
    for (const e of this.entries.values()) if (e.db.owns(owner)) e.db.release(owner, new SessionGone());
  }

  /** Zeroes every key (the layer is retired). */
  async close(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.allSettled(all.map((e) => e.keys?.close()));
  }

  private async load(e: Entry): Promise<void> {
    const keys = await SearchableKeys.load({
      db: e.db,
      kek: this.keyring.backends(),
      columns: [...this.columns],
      keyring: this.keyring,
      log: this.log,
      ...(this.opts.refreshMs !== undefined && { refreshMs: this.opts.refreshMs }),
      ...(this.opts.activationDelayMs !== undefined && { activationDelayMs: this.opts.activationDelayMs }),
      ...(this.opts.candidateSlots !== undefined && { candidateSlots: this.opts.candidateSlots }),
      ...(this.opts.tokenCacheSize !== undefined && { tokenCacheSize: this.opts.tokenCacheSize }),
    });
    e.keys = keys;
  }

  /** Runs `fn` over this session's connection, with a deadline. */
  private run(e: Entry, owner: object, ctx: InterceptContext, fn: () => Promise<void>): Promise<void> {
    e.db.lend(owner, new SessionDb(ctx, SEARCHABLE_STATEMENT));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new SearchableKeyError(`the searchable key table did not answer within ${this.opts.timeoutMs} ms`)), this.opts.timeoutMs);
      timer.unref();
    });
    const busy = Promise.race([fn(), deadline]).finally(() => {
      clearTimeout(timer);
      e.db.release(owner, new SessionGone());
      if (e.busy === busy) e.busy = undefined;
    });
    e.busy = busy;
    return busy;
  }

  /** Does this database hold any configured searchable table? */
  private hasTables(catalog: ResolvedCatalog): boolean {
    let has = this.withTables.get(catalog);
    if (has === undefined) {
      has = this.columns.some((c) => catalog.relation(c.schema, c.table) !== undefined);
      this.withTables.set(catalog, has);
    }
    return has;
  }
}

/** The lending session went away (or stopped lending) before its queries were answered. */
class SessionGone extends Error {
  constructor() {
    super('the session lending its connection ended');
  }
}
