// The entry point the proxy calls for every Query and Parse message: admin
// command detection, the textual prefilter (most statements never reach the
// parser), a bounded cache (CLOCK, near-LRU) of analyses keyed by statement text, and behind it a
// cache of plans by shape (the text with its literals masked, templates.ts), so
// statements that differ only in their values (literals interpolated by the
// client) are not parsed again. Catalog dependencies are re-checked on every
// hit of either (an ALTER TABLE changes the column order a positional INSERT
// relies on).
import { isUtf8 } from 'node:buffer';
import { parseSync } from 'libpg-query';
import type { TablePolicy } from '../config/types.js';
import { analyzeText, type Dependency } from './analyze.js';
import type { Ast } from './ast.js';
import { SQLSTATE } from './errors.js';
import { adminCommand, mayBeDdl } from './lexical.js';
import { ClockCache } from '../cache/clock-cache.js';
import { buildPolicyIndex, type PolicyIndex } from './policy.js';
import { maskLiterals, type MaskedText } from './shape.js';
import { isDdlType } from './statements.js';
import { buildTemplate, ConstReads, matches, rebase, ShapeCache, type Template } from './templates.js';
import type { ColumnsOf, SqlPlan } from './types.js';

export interface SqlAnalyzerOptions {
  /** `Config.encrypted`. A config reload builds a new analyzer. */
  tables: readonly TablePolicy[];
  /** Live catalog: ordered, non-dropped column names of a table, or undefined when unknown. */
  columnsOf: ColumnsOf;
  /** Analyses kept (default 2048). */
  cacheSize?: number;
  /** Longer texts (bulk INSERTs with inline values) are analysed but not cached (default 64 KiB). */
  maxCachedTextLength?: number;
  /** Shapes whose plans are kept for texts that differ only in literal values (default 1024; 0 = off). */
  shapeCacheSize?: number;
  /** Bound on the shape cache, in estimated bytes of keys and plans (default 16 MiB). */
  shapeCacheBytes?: number;
}

interface CacheEntry {
  plan: SqlPlan;
  deps: Dependency[];
  /** The shape's template the plan was rebased from. */
  template?: Template;
}

/**
 * A text planned from a shape's template enters the text cache while the
 * shape's texts come back: the first ADMIT_FREELY always, then only while at
 * least one in REUSE_RATIO of them was found again, and one in REPROBE anyway
 * (so a shape whose literals start repeating is cached again). A shape whose
 * literal changes every time (a lookup by token, an INSERT of new values)
 * would otherwise fill the cache with one-off texts: each costs an insertion,
 * an eviction and, living long enough to be promoted, old-generation garbage
 * (measured on `pgbench -M simple` lookups: ~3 µs per query of cache
 * insertion and major GC, perf-sampled).
 */
const ADMIT_FREELY = 64;
const REUSE_RATIO = 8;
const REPROBE = 16;

function admits(t: Template): boolean {
  return t.derived <= ADMIT_FREELY || t.reused * REUSE_RATIO >= t.derived || t.derived % REPROBE === 0;
}

/**
 * Whether to look a text up in the text cache before masking it. A lookup hashes
 * the whole text and walks a bucket of a large Map: about 0.25 µs in a tight loop
 * but over 1 µs in a busy proxy (cold cache lines), for nothing when every text
 * is new (a lookup by token sent as a literal). A hit saves the mask, the shape
 * match and the rebase (about 1.2 µs). So: while at least one early lookup in
 * DENSE_RATIO hits (judged per WINDOW lookups), every text is looked up first;
 * below that, only one in SAMPLE (enough to see texts start repeating), and the
 * rest go to the shapes. Any text no template serves is looked up before it is
 * parsed either way, so skipping costs a repeated text at most the mask and
 * shape match, never a parse.
 */
const WINDOW = 256;
const DENSE_RATIO = 8;
const SAMPLE = 8;

class TextProbe {
  private sparse = false;
  private tick = 0;
  private probes = 0;
  private hits = 0;

  early(): boolean {
    return !this.sparse || ++this.tick % SAMPLE === 0;
  }

  record(hit: boolean): void {
    this.probes++;
    if (hit) this.hits++;
    if (this.probes < WINDOW) return;
    this.sparse = this.hits * DENSE_RATIO < this.probes;
    this.probes = 0;
    this.hits = 0;
  }
}

const PASSTHROUGH: SqlPlan = Object.freeze({ kind: 'passthrough', isDdl: false });
const PASSTHROUGH_DDL: SqlPlan = Object.freeze({ kind: 'passthrough', isDdl: true });

function sameColumns(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  return a.every((x, i) => x === b[i]);
}

export class SqlAnalyzer {
  readonly policy: PolicyIndex;
  /** `misses` counts texts not served from the text cache; `shapeHits` of them were rebased from a shape's plan, not parsed. */
  readonly stats = { prefiltered: 0, hits: 0, misses: 0, shapeHits: 0 };
  /** Analyses by text. A hit marks the entry and never moves it (clock-cache.ts says why). */
  private readonly cache: ClockCache<string, CacheEntry>;
  private readonly shapes: ShapeCache;
  private readonly shapeCacheBytes: number;
  private readonly cacheSize: number;
  private readonly maxCachedTextLength: number;
  private readonly columnsOf: ColumnsOf;
  private readonly probe = new TextProbe();

  constructor(opts: SqlAnalyzerOptions) {
    this.policy = buildPolicyIndex(opts.tables);
    this.columnsOf = opts.columnsOf;
    this.cacheSize = opts.cacheSize ?? 2048;
    this.cache = new ClockCache({ maxEntries: this.cacheSize });
    this.maxCachedTextLength = opts.maxCachedTextLength ?? 64 * 1024;
    this.shapeCacheBytes = opts.shapeCacheBytes ?? 16 * 1024 * 1024;
    this.shapes = new ShapeCache(opts.shapeCacheSize ?? 1024, this.shapeCacheBytes);
  }

  /**
   * Plan one message text (a Query string or a Parse statement, without the NUL
   * terminator). Pass the Buffer when you have it: offsets are bytes of it.
   * `force` skips the prefilter (SqlSession uses it for EXECUTE/DEALLOCATE).
   * `text`, with a Buffer: its UTF-8 decoding, when the caller has it already
   * (the bytes are then taken as valid UTF-8).
   */
  analyze(sql: string | Buffer, opts: { force?: boolean; text?: string } = {}): SqlPlan {
    let text: string;
    let bytes: Buffer | undefined;
    if (typeof sql === 'string') text = sql;
    else if (opts.text !== undefined) {
      text = opts.text;
      bytes = sql;
    } else if (isUtf8(sql)) {
      text = sql.toString('utf8');
      bytes = sql;
    } else {
      // Not UTF-8: the parser's byte offsets would not match these bytes.
      const latin = sql.toString('latin1');
      if (adminCommand(latin) !== null) return { kind: 'admin', text: adminCommand(sql.toString('utf8'))! };
      if (!this.policy.mayMention(latin)) return mayBeDdl(latin) ? PASSTHROUGH_DDL : PASSTHROUGH;
      return {
        kind: 'reject',
        error: {
          code: SQLSTATE.characterNotInRepertoire,
          reason: 'invalid_utf8',
          message: 'pgcmek: a statement that mentions an encrypted table is not valid UTF-8; set client_encoding to UTF8',
        },
      };
    }
    const admin = adminCommand(text);
    if (admin !== null) return { kind: 'admin', text: admin };
    if (!opts.force && !this.policy.mayMention(text)) {
      this.stats.prefiltered++;
      return mayBeDdl(text) ? this.ddlCheck(text) : PASSTHROUGH;
    }
    if (text.includes('\0')) {
      return { kind: 'reject', error: { code: '08P01', reason: 'internal', message: 'pgcmek: statement text contains a NUL byte' } };
    }
    // Probed before the shapes only while it pays (see TextProbe); a text no template
    // serves is always looked up before it is parsed. (A string caller, rare, always probes first.)
    const maskable = this.shapes.enabled && (bytes ? bytes.length : Buffer.byteLength(text, 'utf8')) <= this.shapeCacheBytes;
    const early = !maskable || bytes === undefined || this.probe.early();
    if (early) {
      const hit = this.cachedPlan(text);
      if (maskable) this.probe.record(hit !== undefined);
      if (hit) return hit;
    }
    this.stats.misses++;
    const b = bytes ?? Buffer.from(text, 'utf8');
    const masked = maskable ? maskLiterals(b) : undefined;
    if (masked) {
      const entry = this.fromShape(masked, b);
      if (entry) {
        this.stats.shapeHits++;
        const t = entry.template!;
        t.derived++;
        if (admits(t)) this.remember(text, entry);
        return entry.plan;
      }
      if (!early) {
        const hit = this.cachedPlan(text);
        if (hit) {
          this.stats.misses--;
          return hit;
        }
      }
    }
    const reads = masked && this.shapes.recurring(masked.key) ? new ConstReads() : undefined;
    const { plan, deps } = analyzeText(text, b, this.policy, this.columnsOf, reads && ((t) => reads.instrument(parseSync(t))));
    this.remember(text, { plan, deps });
    if (masked && reads) {
      const t = buildTemplate(plan, deps, masked, b, reads);
      if (t) this.shapes.add(masked.key, t);
    }
    return plan;
  }

  /** The text cache's plan for this text, if it is there and its catalog answers still hold (counted as a hit). */
  private cachedPlan(text: string): SqlPlan | undefined {
    const hit = this.cache.get(text);
    if (!hit || !this.current(hit.deps)) return undefined;
    this.stats.hits++;
    if (hit.template) hit.template.reused++;
    return hit.plan;
  }

  clearCache(): void {
    this.cache.clear();
    this.shapes.clear();
  }

  get cachedShapes(): number {
    return this.shapes.entries;
  }

  /** The plan of an analysed text of the same shape, rebased onto this one; undefined = parse it. */
  private fromShape(masked: MaskedText, bytes: Buffer): CacheEntry | undefined {
    const list = this.shapes.get(masked.key);
    if (!list) return undefined;
    for (const t of list) {
      if (!matches(t, masked)) continue;
      if (!this.current(t.deps)) {
        this.shapes.drop(masked.key, t);
        return undefined;
      }
      const plan = rebase(t, bytes, masked);
      return plan && { plan, deps: t.deps, template: t };
    }
    return undefined;
  }

  /** Are the catalog answers a plan relied on still the same? A failing catalog counts as changed. */
  private current(deps: readonly Dependency[]): boolean {
    for (const d of deps) {
      let now: readonly string[] | undefined;
      try {
        now = this.columnsOf(d.schema, d.table);
      } catch {
        return false;
      }
      if (!sameColumns(now, d.columns)) return false;
    }
    return true;
  }

  get cachedEntries(): number {
    return this.cache.size;
  }

  /** A statement without configured tables that may be DDL: parse to tell (cached). */
  private ddlCheck(text: string): SqlPlan {
    const hit = this.cache.get(text);
    if (hit) return hit.plan;
    let ddl = true; // unparsable: assume it may change the catalog
    try {
      const stmts = (parseSync(text) as unknown as { stmts?: { stmt: Ast }[] }).stmts ?? [];
      ddl = stmts.some(({ stmt }) => {
        const t = Object.keys(stmt)[0] ?? '';
        return isDdlType(t) || (t === 'SelectStmt' && !!stmt.SelectStmt.intoClause);
      });
    } catch {
      // keep ddl = true
    }
    const plan = ddl ? PASSTHROUGH_DDL : PASSTHROUGH;
    this.remember(text, { plan, deps: [] });
    return plan;
  }

  private remember(text: string, entry: CacheEntry): void {
    if (text.length > this.maxCachedTextLength || this.cacheSize <= 0) return;
    this.cache.set(text, entry);
  }
}
