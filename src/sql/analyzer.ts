// The entry point the proxy calls for every Query and Parse message: admin
// command detection, the textual prefilter (most statements never reach the
// parser), and a bounded LRU of analyses keyed by statement text whose catalog
// dependencies are re-checked on every hit (an ALTER TABLE changes the column
// order a positional INSERT relies on).
import { isUtf8 } from 'node:buffer';
import { parseSync } from 'libpg-query';
import type { TablePolicy } from '../config/types.js';
import { analyzeText, type Dependency } from './analyze.js';
import type { Ast } from './ast.js';
import { SQLSTATE } from './errors.js';
import { adminCommand, mayBeDdl } from './lexical.js';
import { buildPolicyIndex, type PolicyIndex } from './policy.js';
import { isDdlType } from './statements.js';
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
}

interface CacheEntry {
  plan: SqlPlan;
  deps: Dependency[];
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
  readonly stats = { prefiltered: 0, hits: 0, misses: 0 };
  private readonly cache = new Map<string, CacheEntry>();
  private readonly cacheSize: number;
  private readonly maxCachedTextLength: number;
  private readonly columnsOf: ColumnsOf;

  constructor(opts: SqlAnalyzerOptions) {
    this.policy = buildPolicyIndex(opts.tables);
    this.columnsOf = opts.columnsOf;
    this.cacheSize = opts.cacheSize ?? 2048;
    this.maxCachedTextLength = opts.maxCachedTextLength ?? 64 * 1024;
  }

  /**
   * Plan one message text (a Query string or a Parse statement, without the NUL
   * terminator). Pass the Buffer when you have it: offsets are bytes of it.
   * `force` skips the prefilter (SqlSession uses it for EXECUTE/DEALLOCATE).
   */
  analyze(sql: string | Buffer, opts: { force?: boolean } = {}): SqlPlan {
    let text: string;
    let bytes: Buffer | undefined;
    if (typeof sql === 'string') text = sql;
    else if (isUtf8(sql)) {
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
    const hit = this.cache.get(text);
    if (hit && hit.deps.every((d) => sameColumns(this.columnsOf(d.schema, d.table), d.columns))) {
      this.cache.delete(text);
      this.cache.set(text, hit);
      this.stats.hits++;
      return hit.plan;
    }
    this.stats.misses++;
    const { plan, deps } = analyzeText(text, bytes ?? Buffer.from(text, 'utf8'), this.policy, this.columnsOf);
    this.remember(text, { plan, deps });
    return plan;
  }

  clearCache(): void {
    this.cache.clear();
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
    this.cache.delete(text);
    this.cache.set(text, entry);
    if (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
  }
}
