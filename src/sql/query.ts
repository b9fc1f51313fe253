// Query levels: SELECT/VALUES/set operations, their FROM clauses and WITH
// queries, and the generic expression walk that visits every node once — noting
// parameters and relations, descending into subqueries, and handing comparisons,
// ORDER BY and GROUP BY to predicates.ts.
import { as, items, strings, typeOf, type Ast } from './ast.js';
import type { AnalysisContext, QueryOutput } from './context.js';
import { checkCreateAs } from './ddl.js';
import { refuse } from './errors.js';
import { checkOrdering, checkUsing, handleAExpr, handleSubLinkComparison, refuseInExpression } from './predicates.js';
import { expandStar, Scope, tableColumns, type DerivedColumn, type Entry, type Origin } from './scope.js';
import { bareEncrypted, originTarget } from './values.js';
import { analyzeDml } from './writes.js';

/** How to walk an expression: its scope, the strict context label (WHERE, ORDER BY…) or null, and the level's target list. */
export interface Walk {
  scope: Scope;
  strict: string | null;
  targets?: Ast[];
}

const MAX_NESTING = 200;
const PLAIN: Origin = { kind: 'plain' };

export function walkExpr(ctx: AnalysisContext, node: unknown, w: Walk): void {
  if (node === null || typeof node !== 'object') return;
  if (Array.isArray(node)) {
    for (const n of node) walkExpr(ctx, n, w);
    return;
  }
  const n = node as Ast;
  const t = typeOf(n);
  if (t === undefined) {
    if (typeof n.relname === 'string') ctx.lookupTable(n); // a bare RangeVar (INTO, FOR UPDATE OF, DDL)
    walkFields(ctx, n, w);
    return;
  }
  const b = n[t] as Ast;
  switch (t) {
    case 'A_Const':
    case 'String':
    case 'Integer':
    case 'Float':
    case 'Boolean':
    case 'BitString':
    case 'A_Star':
      return;
    case 'ParamRef':
      ctx.noteParam(b.number, b.location);
      return;
    case 'ColumnRef':
      if (w.strict) {
        const target = bareEncrypted(n, w.scope);
        if (target) refuseInExpression(target, w.strict, b.location);
      }
      return;
    case 'A_Expr':
      if (handleAExpr(ctx, b, w)) return;
      break;
    case 'NullTest':
      if (bareEncrypted(b.arg, w.scope)) return;
      break;
    case 'SubLink': {
      const kind = b.subLinkType as string;
      if (kind === 'ANY_SUBLINK' || kind === 'ALL_SUBLINK') {
        handleSubLinkComparison(ctx, b, w);
        return;
      }
      walkExpr(ctx, b.testexpr, w);
      analyzeSelect(ctx, as(b.subselect, 'SelectStmt')!, w.scope);
      return;
    }
    case 'SelectStmt':
      analyzeSelect(ctx, b, w.scope);
      return;
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      analyzeDml(ctx, t, b, w.scope);
      return;
    case 'FuncCall': {
      const name = strings(b.funcname).pop();
      walkExpr(ctx, b.args, { ...w, strict: name === 'count' ? null : w.strict });
      for (const s of items(b.agg_order)) checkOrdering(ctx, as(s, 'SortBy')!.node, w, 'an aggregate ORDER BY');
      walkExpr(ctx, b.agg_filter, { ...w, strict: 'FILTER (WHERE …)' });
      if (b.over) walkWindow(ctx, b.over, w);
      return;
    }
    case 'WindowDef':
      walkWindow(ctx, b, w);
      return;
    case 'SortBy':
      checkOrdering(ctx, b.node, w, 'ORDER BY');
      return;
    case 'RangeVar':
      ctx.lookupTable(b);
      break;
    case 'CaseExpr': {
      const subject = bareEncrypted(b.arg, w.scope);
      if (subject) refuseInExpression(subject, 'CASE … WHEN', b.location);
      walkExpr(ctx, b.arg, w);
      for (const cw of items(b.args)) {
        const wb = as(cw, 'CaseWhen')!;
        walkExpr(ctx, wb.expr, { ...w, strict: 'CASE WHEN' });
        walkExpr(ctx, wb.result, w);
      }
      walkExpr(ctx, b.defresult, w);
      return;
    }
  }
  walkFields(ctx, b, w);
}

function walkFields(ctx: AnalysisContext, b: Ast, w: Walk): void {
  for (const k in b) {
    const v = b[k];
    if (v !== null && typeof v === 'object') walkExpr(ctx, v, w);
  }
}

function walkWindow(ctx: AnalysisContext, wd: Ast, w: Walk): void {
  for (const p of items(wd.partitionClause)) checkOrdering(ctx, p, w, 'PARTITION BY');
  for (const s of items(wd.orderClause)) checkOrdering(ctx, as(s, 'SortBy')!.node, w, 'a window ORDER BY');
  walkExpr(ctx, wd.startOffset, w);
  walkExpr(ctx, wd.endOffset, w);
}

function walkGrouping(ctx: AnalysisContext, g: Ast, w: Walk): void {
  const gs = as(g, 'GroupingSet');
  if (gs) {
    for (const c of items(gs.content)) walkGrouping(ctx, c, w);
    return;
  }
  const row = as(g, 'RowExpr');
  if (row) {
    for (const c of items(row.args)) walkGrouping(ctx, c, w);
    return;
  }
  checkOrdering(ctx, g, w, 'GROUP BY');
}

/** Analyse one SELECT/VALUES/set-operation level (memoised per node). */
export function analyzeSelect(ctx: AnalysisContext, sel: Ast, parent: Scope): QueryOutput {
  const memo = ctx.selects.get(sel);
  if (memo) return memo;
  if (++ctx.depth > MAX_NESTING) refuse('internal', 'statement nests too deeply to analyse');
  const scope = new Scope(parent);
  if (sel.withClause) analyzeWith(ctx, sel.withClause, scope);
  let columns: DerivedColumn[] | undefined;
  const w: Walk = { scope, strict: null, targets: sel.targetList ?? [] };
  if (sel.op && sel.op !== 'SETOP_NONE') {
    const l = analyzeSelect(ctx, sel.larg, scope);
    const r = analyzeSelect(ctx, sel.rarg, scope);
    columns = unionColumns(l.columns, r.columns);
    for (const s of items(sel.sortClause)) checkSetOpOrdering(as(s, 'SortBy')!.node, columns);
  } else if (sel.valuesLists) {
    const rows = (sel.valuesLists as Ast[]).map((r) => items(r));
    for (const row of rows) for (const item of row) walkExpr(ctx, item, w);
    let n = 0;
    for (const r of rows) n = Math.max(n, r.length); // no spread: VALUES may hold 100k rows
    columns = Array.from({ length: n }, (_, i) => ({
      name: `column${i + 1}`,
      origin: { kind: 'derived', sources: rows.filter((r) => i < r.length).map((r) => ({ expr: r[i]!, scope, elements: false })) },
    }));
    for (const s of items(sel.sortClause)) checkSetOpOrdering(as(s, 'SortBy')!.node, columns);
  } else {
    buildFrom(ctx, sel.fromClause ?? [], scope);
    for (const t of w.targets!) walkExpr(ctx, as(t, 'ResTarget')?.val, w);
    walkExpr(ctx, sel.whereClause, { ...w, strict: 'WHERE' });
    for (const g of items(sel.groupClause)) walkGrouping(ctx, g, w);
    walkExpr(ctx, sel.havingClause, { ...w, strict: 'HAVING' });
    for (const wd of items(sel.windowClause)) walkWindow(ctx, as(wd, 'WindowDef')!, w);
    for (const s of items(sel.sortClause)) checkOrdering(ctx, as(s, 'SortBy')!.node, w, 'ORDER BY');
    walkExpr(ctx, sel.distinctClause, w);
    columns = outputColumns(w.targets!, scope);
    if (sel.intoClause) {
      ctx.ddl = true;
      walkExpr(ctx, sel.intoClause, w);
      checkCreateAs(ctx, sel.intoClause, { scope, columns });
    }
  }
  walkExpr(ctx, sel.limitCount, w);
  walkExpr(ctx, sel.limitOffset, w);
  walkExpr(ctx, sel.lockingClause, w);
  const out: QueryOutput = { scope, columns };
  ctx.selects.set(sel, out);
  ctx.depth--;
  return out;
}

/** ORDER BY of a set operation / VALUES refers to output columns by name or position. */
function checkSetOpOrdering(node: Ast, columns: DerivedColumn[] | undefined): void {
  if (!columns) return;
  const k = as(node, 'A_Const');
  const cr = as(node, 'ColumnRef');
  const f = cr ? strings(cr.fields) : [];
  const col = k?.ival !== undefined ? columns[(k.ival.ival as number) - 1] : f.length === 1 ? columns.find((c) => c.name === f[0]) : undefined;
  const t = col ? originTarget(col.origin, 0) : undefined;
  if (t) refuseInExpression(t, 'ORDER BY', k?.location ?? cr?.location);
}

function unionColumns(l: DerivedColumn[] | undefined, r: DerivedColumn[] | undefined): DerivedColumn[] | undefined {
  if (!l || !r) return undefined;
  return l.map((c, i) => ({ name: c.name, origin: r[i] ? { kind: 'union', origins: [c.origin, r[i]!.origin] } : c.origin }));
}

/** Output columns of a target list (`*` expanded); undefined when a `*` cannot be expanded. */
export function outputColumns(targets: Ast[], scope: Scope): DerivedColumn[] | undefined {
  const out: DerivedColumn[] = [];
  for (const t of targets) {
    const rt = as(t, 'ResTarget');
    if (!rt?.val) continue;
    const cr = as(rt.val, 'ColumnRef');
    const fields = (cr?.fields as Ast[] | undefined) ?? [];
    if (cr && typeOf(fields[fields.length - 1]) === 'A_Star') {
      const cols = expandStar(strings(fields.slice(0, -1)), scope);
      if (!cols) return undefined;
      out.push(...cols);
      continue;
    }
    out.push({ name: rt.name ?? figureName(rt.val), origin: { kind: 'derived', sources: [{ expr: rt.val, scope, elements: false }] } });
  }
  return out;
}

/** Postgres' default output column name for an expression (FigureColname, simplified). */
function figureName(e: Ast): string {
  switch (typeOf(e)) {
    case 'ColumnRef':
      return strings(as(e, 'ColumnRef')!.fields).pop() || '?column?';
    case 'FuncCall':
      return strings(as(e, 'FuncCall')!.funcname).pop() ?? '?column?';
    case 'TypeCast': {
      const tc = as(e, 'TypeCast')!;
      const inner = figureName(tc.arg);
      return inner !== '?column?' ? inner : (strings(tc.typeName?.names).pop() ?? '?column?');
    }
    case 'CaseExpr':
      return 'case';
    case 'CoalesceExpr':
      return 'coalesce';
    case 'A_ArrayExpr':
      return 'array';
    default:
      return '?column?';
  }
}

function renameColumns(cols: DerivedColumn[] | undefined, colnames: unknown): DerivedColumn[] | undefined {
  const names = strings(colnames);
  if (!cols || names.length === 0) return cols;
  return cols.map((c, i) => (i < names.length ? { ...c, name: names[i]! } : c));
}

export function analyzeWith(ctx: AnalysisContext, withClause: Ast, scope: Scope): void {
  for (const item of items(withClause.ctes)) {
    const cte = as(item, 'CommonTableExpr')!;
    const name = cte.ctename as string;
    if (withClause.recursive) scope.ctes.set(name, { name, columns: undefined });
    const out = analyzeQueryNode(ctx, cte.ctequery, scope);
    scope.ctes.set(name, { name, columns: renameColumns(out.columns, cte.aliascolnames) });
  }
}

/** A wrapped SELECT or data-modifying statement used as a query (CTE, COPY (…) TO, EXPLAIN). */
export function analyzeQueryNode(ctx: AnalysisContext, node: Ast, scope: Scope): QueryOutput {
  const t = typeOf(node);
  if (t === 'SelectStmt') return analyzeSelect(ctx, node.SelectStmt, scope);
  if (t === 'InsertStmt' || t === 'UpdateStmt' || t === 'DeleteStmt' || t === 'MergeStmt') return analyzeDml(ctx, t, node[t], scope);
  walkExpr(ctx, node, { scope, strict: null });
  return { scope, columns: undefined };
}

/** A table reference: a CTE, a configured table or another relation. */
function rangeVarEntry(ctx: AnalysisContext, rv: Ast, scope: Scope): Entry {
  const alias = rv.alias?.aliasname as string | undefined;
  if (!rv.schemaname) {
    const cte = scope.findCte(rv.relname);
    if (cte) return { kind: 'derived', refname: alias ?? rv.relname, columns: renameColumns(cte.columns, rv.alias?.colnames) };
  }
  const policy = ctx.lookupTable(rv);
  const entry: Entry = {
    kind: 'table',
    refname: alias ?? rv.relname,
    schema: rv.schemaname,
    relname: rv.relname,
    hasAlias: alias !== undefined,
    policy,
    columns: policy ? ctx.columnsOf(policy.schema, policy.table) : undefined,
  };
  if (strings(rv.alias?.colnames).length > 0) {
    return { kind: 'derived', refname: entry.refname, columns: renameColumns(tableColumns(entry), rv.alias.colnames) };
  }
  return entry;
}

export function buildFrom(ctx: AnalysisContext, from: Ast[], scope: Scope): void {
  for (const item of from) addFromItem(ctx, item, scope);
}

function addFromItem(ctx: AnalysisContext, item: Ast, scope: Scope): Entry[] {
  const t = typeOf(item);
  const b = t ? (item[t] as Ast) : item;
  const push = (e: Entry): Entry[] => {
    scope.entries.push(e);
    return [e];
  };
  switch (t) {
    case 'RangeVar':
      return push(rangeVarEntry(ctx, b, scope));
    case 'RangeSubselect': {
      const out = analyzeSelect(ctx, as(b.subquery, 'SelectStmt')!, b.lateral ? scope : scope.withoutEntries());
      return push({ kind: 'derived', refname: b.alias?.aliasname, columns: renameColumns(out.columns, b.alias?.colnames) });
    }
    case 'JoinExpr': {
      const left = addFromItem(ctx, b.larg, scope);
      const right = addFromItem(ctx, b.rarg, scope);
      if (b.isNatural) for (const e of [...left, ...right]) if (e.kind === 'table') e.natural = true;
      if (b.usingClause) {
        const l = new Scope();
        l.entries.push(...left);
        const r = new Scope();
        r.entries.push(...right);
        checkUsing(strings(b.usingClause), l, r, undefined);
      }
      walkExpr(ctx, b.quals, { scope, strict: 'JOIN … ON' });
      if (b.alias) push({ kind: 'derived', refname: b.alias.aliasname, columns: undefined });
      return [...left, ...right];
    }
    case 'RangeFunction':
      return push(functionEntry(ctx, b, scope));
    case 'RangeTableSample': {
      const entries = addFromItem(ctx, b.relation, scope);
      walkExpr(ctx, b.args, { scope, strict: null });
      walkExpr(ctx, b.repeatable, { scope, strict: null });
      return entries;
    }
    default:
      walkExpr(ctx, b, { scope, strict: null });
      return push({ kind: 'derived', refname: b?.alias?.aliasname, columns: undefined });
  }
}

/** `unnest(a, b, …)` / `ROWS FROM (unnest(a), …)`: each argument's elements form a column. */
function functionEntry(ctx: AnalysisContext, b: Ast, scope: Scope): Entry {
  walkExpr(ctx, b.functions, { scope, strict: null });
  let columns: DerivedColumn[] | undefined = [];
  let fname: string | undefined;
  for (const f of items(b.functions)) {
    const [call, coldefs] = items(f);
    const fc = as(call, 'FuncCall');
    const name = fc ? strings(fc.funcname) : [];
    fname ??= name[name.length - 1];
    const isUnnest = name[name.length - 1] === 'unnest' && (name.length === 1 || name[0] === 'pg_catalog');
    if (!fc || !isUnnest || items(coldefs).length > 0) {
      columns = undefined;
      break;
    }
    for (const arg of items(fc.args)) columns.push({ name: 'unnest', origin: { kind: 'derived', sources: [{ expr: arg, scope, elements: true }] } });
  }
  // Other functions: shape unknown, even with a column alias list (it may be shorter than the output).
  if (columns && b.ordinality) columns.push({ name: 'ordinality', origin: PLAIN });
  return { kind: 'derived', refname: b.alias?.aliasname ?? fname, columns: renameColumns(columns, b.alias?.colnames) };
}
