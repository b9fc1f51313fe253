// The process-wide half of transparent encryption: the keyring, the SQL analyzer,
// the per-database catalog cache, and the factory that gives each proxy session
// its own EncryptionSession. With an empty `encrypted:` map (and
// `decrypt_unmapped: off`) the factory returns no interceptor at all, so the
// proxy forwards every frame from its header alone.
import type { Config, TablePolicy } from '../config/types.js';
import type { Keyring } from '../crypto/keyring.js';
import type { Logger } from '../log.js';
import { CatalogCache } from '../catalog/cache.js';
import type { ResolvedCatalog } from '../catalog/types.js';
import { SqlAnalyzer } from '../sql/analyzer.js';
import type { InterceptorFactory, SessionInfo } from '../proxy/interceptor.js';
import { ValueCodec } from './values.js';
import { EncryptionSession } from './session.js';
import type { AdminGateway } from './admin-gateway.js';
import type { RewritePlan, SqlRejection } from '../sql/types.js';
import { searchableColumnsOf } from '../searchable/types.js';
import { SearchableRegistry, type SearchableOptions } from './searchable-keys.js';
import { statementShape, type StatementShape } from './searchable-sql.js';
import type { ParseRewrite } from './searchable-rewrite.js';

/** Operational hooks (src/metrics): counted off the hot path or in a codec subclass. */
export interface EncryptionObserver {
  /** Used instead of a plain ValueCodec over the same keyring (metrics count values per column in it). */
  codec?: ValueCodec;
  /** A statement was refused (already logged). */
  refused?(e: SqlRejection): void;
}

export interface EncryptionLayerOptions {
  config: Config;
  keyring: Keyring;
  logger: Logger;
  /** Runs `CMEK …` admin commands for a session (issue 5); absent = refused. */
  admin?: AdminGateway;
  observer?: EncryptionObserver;
  /** Searchable columns: key refresh, activation delay, candidate slots (defaults in src/searchable). */
  searchable?: SearchableOptions;
}

export class EncryptionLayer {
  readonly tables: readonly TablePolicy[];
  readonly codec: ValueCodec;
  readonly catalogs: CatalogCache;
  readonly logger: Logger;
  readonly decryptUnmapped: boolean;
  readonly admin: AdminGateway | undefined;
  /** Searchable column keys, per database. */
  readonly searchable: SearchableRegistry;
  private readonly analyzers = new Map<string, SqlAnalyzer>();
  /** Where each plan's searchable comparisons sit in its text (plans are shared, so is this). */
  private readonly shapes = new WeakMap<RewritePlan, StatementShape | Error>();
  private readonly rewrites = new WeakMap<RewritePlan, Map<string, ParseRewrite>>();
  /** Catalog problems already logged, per database (log each once, not per session). */
  private readonly reported = new Set<string>();

  constructor(readonly opts: EncryptionLayerOptions) {
    this.tables = opts.config.encrypted;
    const dek = opts.config.kek.dek;
    this.codec = opts.observer?.codec ?? new ValueCodec(opts.keyring, { size: dek.valueCacheSize ?? 0, ttlMs: dek.cacheTtlSeconds * 1000 });
    this.catalogs = new CatalogCache(0, { maxAgeMs: 60_000 });
    this.logger = opts.logger;
    this.decryptUnmapped = opts.config.decryptUnmapped === 'prefixed';
    this.admin = opts.admin;
    this.searchable = new SearchableRegistry(searchableColumnsOf(this.tables), opts.keyring, opts.logger, opts.searchable);
  }

  /** The positions of a plan's searchable comparisons in `bytes` (its text); throws RewriteError. */
  shapeOf(plan: RewritePlan, bytes: Buffer): StatementShape {
    let s = this.shapes.get(plan);
    if (s === undefined) {
      try {
        s = statementShape(bytes.toString('utf8'), plan.predicates);
      } catch (e) {
        s = e instanceof Error ? e : new Error(String(e));
      }
      this.shapes.set(plan, s);
    }
    if (s instanceof Error) throw s;
    return s;
  }

  /** A plan's Parse rewrite for these parameter types and slots, computed once (plans are shared and immutable). */
  parseRewrite(plan: RewritePlan, variant: string, build: () => ParseRewrite): ParseRewrite {
    let m = this.rewrites.get(plan);
    if (!m) this.rewrites.set(plan, (m = new Map()));
    let rw = m.get(variant);
    if (!rw) {
      rw = build();
      if (m.size >= 16) m.clear();
      m.set(variant, rw);
    }
    return rw;
  }

  /**
   * The layer is retired (config reload, shutdown): zero every searchable column
   * key and drop the decrypted-value cache. Sessions still open on it must have ended.
   */
  close(): Promise<void> {
    this.codec.clearCache();
    return this.searchable.close();
  }

  get keyring(): Keyring {
    return this.opts.keyring;
  }

  get enabled(): boolean {
    // Admin commands only work on configured columns: with an empty map there is nothing to
    // intercept, and the proxy forwards every frame from its header (the PgBouncer-speed path).
    return this.tables.length > 0 || this.decryptUnmapped;
  }

  /** One analyzer per database: its cache is keyed by text, and column order is per database. */
  analyzer(database: string): SqlAnalyzer {
    let a = this.analyzers.get(database);
    if (!a) {
      a = new SqlAnalyzer({
        tables: this.tables,
        columnsOf: (schema, table) => this.catalogs.get(database)?.columnsOf(schema, table),
      });
      this.analyzers.set(database, a);
    }
    return a;
  }

  /** Logs a database's catalog warnings/errors once per load. */
  noteCatalog(database: string, catalog: ResolvedCatalog): void {
    const key = `${database}:${this.catalogs.generation}:${catalog.warnings.join('|')}:${catalog.errors.join('|')}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    for (const w of catalog.warnings) this.logger.warn({ database }, `encrypted map: ${w}`);
    for (const e of catalog.errors) this.logger.error({ database }, `encrypted map: ${e}`);
  }

  /** SIGHUP / DDL outside the proxy: forget every resolved catalog and analysis. */
  invalidateAll(): void {
    this.catalogs.invalidateAll();
    for (const a of this.analyzers.values()) a.clearCache();
  }

  factory(): InterceptorFactory {
    return (info: SessionInfo) => (this.enabled ? new EncryptionSession(this, info) : undefined);
  }
}
