// Parse one message text and turn the findings into a plan. Pure and
// synchronous; caching and the prefilter live in analyzer.ts.
import { parseSync } from 'libpg-query';
import type { Ast } from './ast.js';
import { AnalysisContext } from './context.js';
import { qualified, Refusal, SQLSTATE } from './errors.js';
import { charPosition, literalRanges, mayBeDdl, paramRange } from './lexical.js';
import type { PolicyIndex } from './policy.js';
import { analyzeStatement, type ExecuteDraft } from './statements.js';
import type { ByteRange, ColumnsOf, LiteralSite, ParamSite, PredicateSite, SqlPlan, SqlRejection, StatementInfo } from './types.js';

export interface Dependency {
  schema: string;
  table: string;
  columns: readonly string[] | undefined;
}

export interface AnalysisResult {
  plan: SqlPlan;
  /** Catalog answers the plan relies on; the cache re-checks them on every hit. */
  deps: Dependency[];
}

function reject(error: SqlRejection): SqlPlan {
  return { kind: 'reject', error };
}

/** `parse` lets the caller observe the tree (the shape cache records which constants the analysis reads). */
export function analyzeText(
  text: string,
  bytes: Buffer,
  policy: PolicyIndex,
  columnsOf: ColumnsOf,
  parse: (text: string) => unknown = parseSync,
): AnalysisResult {
  let parsed: { stmts?: { stmt: Ast; stmt_location?: number; stmt_len?: number }[] };
  try {
    parsed = parse(text) as typeof parsed;
  } catch (e) {
    if (!policy.mayMention(text)) return { plan: { kind: 'passthrough', isDdl: mayBeDdl(text) }, deps: [] };
    const t = policy.firstMention(text);
    const cursor = (e as { sqlDetails?: { cursorPosition?: number } }).sqlDetails?.cursorPosition;
    const error: SqlRejection = {
      code: SQLSTATE.syntaxError,
      reason: 'syntax_error',
      message: `pgcmek: syntax error in a statement that mentions encrypted table ${t ? qualified(t) : '(one of the configured tables)'}; it is not forwarded`,
    };
    if (t) error.table = qualified(t);
    if (typeof cursor === 'number' && cursor >= 0) error.position = charPosition(bytes, cursor);
    return { plan: reject(error), deps: [] };
  }

  const ctx = new AnalysisContext(policy, columnsOf, text, bytes);
  const deps = () => [...ctx.deps.values()];
  try {
    const statements: StatementInfo[] = [];
    const drafts: ExecuteDraft[] = [];
    (parsed.stmts ?? []).forEach((raw, index) => {
      const start = raw.stmt_location ?? 0;
      const end = raw.stmt_len ? start + raw.stmt_len : bytes.length;
      const info: StatementInfo = { index, type: Object.keys(raw.stmt)[0] ?? '?', range: { start, end }, isDdl: false };
      analyzeStatement(ctx, raw.stmt, info, drafts);
      if (ctx.ddl) info.isDdl = true;
      ctx.ddl = false;
      statements.push(info);
    });
    ctx.checkParamConflicts();
    return { plan: buildPlan(ctx, statements, drafts), deps: deps() };
  } catch (e) {
    if (e instanceof Refusal) {
      const error = { ...e.rejection };
      if (e.location !== undefined) error.position = charPosition(bytes, e.location);
      return { plan: reject(error), deps: deps() };
    }
    // An analysis bug must not let plaintext through: refuse, without echoing the statement.
    return {
      plan: reject({
        code: SQLSTATE.internalError,
        reason: 'internal',
        message: `pgcmek: internal error while analysing a statement on an encrypted table (${(e as Error).name})`,
      }),
      deps: deps(),
    };
  }
}

function buildPlan(ctx: AnalysisContext, statements: StatementInfo[], drafts: ExecuteDraft[]): SqlPlan {
  const isDdl = statements.some((s) => s.isDdl);
  const tablesTouched = [...ctx.tables.values()];
  const special = statements.some((s) => s.prepare || s.execute || s.deallocate);
  if (!special && !tablesTouched.some((t) => t.mapped) && ctx.literals.size === 0 && ctx.params.values.size === 0) {
    return { kind: 'passthrough', isDdl };
  }

  const values = new Map<number, string>();
  for (const [loc, l] of ctx.literals) values.set(loc, l.value);
  for (const p of ctx.predicates.values()) for (const l of p.literals) values.set(l.location, l.value);
  for (const d of drafts) {
    for (const a of d.info.execute!.args) if (a.kind === 'literal') values.set(d.literalLocations.get(a.index)!, a.value);
  }
  let ranges = new Map<number, ByteRange>();
  if (values.size > 0) {
    try {
      ranges = literalRanges(ctx.text, ctx.bytes, values);
    } catch {
      throw new Refusal({ code: SQLSTATE.internalError, reason: 'internal', message: 'pgcmek: could not locate a string literal in the statement' });
    }
  }
  const range = (loc: number): ByteRange => ranges.get(loc)!;

  const literals: LiteralSite[] = [];
  for (const [loc, l] of ctx.literals) {
    const r = range(loc);
    literals.push({ start: r.start, end: r.end, value: l.value, target: l.target });
  }
  literals.sort((a, b) => a.start - b.start);
  const params = new Map<number, ParamSite>();
  for (const [n, v] of [...ctx.params.values].sort((a, b) => a[0] - b[0])) {
    params.set(n, { param: n, target: v.target, elements: v.elements, ranges: [...v.locations].sort((a, b) => a - b).map((l) => paramRange(ctx.bytes, l)) });
  }
  const predicates: PredicateSite[] = [...ctx.predicates.values()]
    .sort((a, b) => a.location - b.location)
    .map((p) => ({
      kind: p.kind,
      negated: p.negated,
      target: p.target,
      location: p.location,
      params: p.params.map((x) => ({ param: x.param, ...paramRange(ctx.bytes, x.location) })),
      literals: p.literals.map((x) => ({ value: x.value, ...range(x.location) })),
    }));
  for (const d of drafts) {
    for (const a of d.info.execute!.args) if (a.kind === 'literal') a.range = range(d.literalLocations.get(a.index)!);
  }
  return { kind: 'plan', params, literals, predicates, copies: ctx.copies, statements, tablesTouched, isDdl };
}
