// INSERT, UPDATE, DELETE and MERGE: which value lands in which encrypted column.
// Values are followed by `flow` (values.ts); WHERE/ON conditions go through the
// predicate rules; RETURNING lists become the statement's output columns (for
// data-modifying CTEs and COPY (… RETURNING …) TO).
import type { TablePolicy } from '../config/types.js';
import { as, items, locationOf, type Ast } from './ast.js';
import type { AnalysisContext, QueryOutput } from './context.js';
import { qualified, refuse } from './errors.js';
import { analyzeSelect, analyzeWith, buildFrom, outputColumns, walkExpr, type Walk } from './query.js';
import { Scope, type TableEntry } from './scope.js';
import type { ColumnTarget } from './types.js';
import { flow, flowOrigin } from './values.js';

export function encryptedColumn(policy: TablePolicy | undefined, column: string): ColumnTarget | undefined {
  const cp = policy?.columns.find((c) => c.column === column);
  return cp && policy ? { schema: policy.schema, table: policy.table, column, policy: cp } : undefined;
}

function targetEntry(ctx: AnalysisContext, rv: Ast): TableEntry {
  const policy = ctx.lookupTable(rv);
  const alias = rv.alias?.aliasname as string | undefined;
  return {
    kind: 'table',
    refname: alias ?? rv.relname,
    schema: rv.schemaname,
    relname: rv.relname,
    hasAlias: alias !== undefined,
    policy,
    columns: policy ? ctx.columnsOf(policy.schema, policy.table) : undefined,
  };
}

function unknownColumns(policy: TablePolicy, location: number | undefined): never {
  refuse(
    'unknown_columns',
    `cannot tell which values go to the encrypted columns of ${qualified(policy)}: its column list is not known to the proxy`,
    { table: policy, location, hint: 'Name the columns explicitly (INSERT INTO t (a, b) …), or retry once the catalog is loaded.' },
  );
}

export function analyzeDml(ctx: AnalysisContext, type: string, b: Ast, parent: Scope): QueryOutput {
  switch (type) {
    case 'InsertStmt':
      return analyzeInsert(ctx, b, parent);
    case 'UpdateStmt':
      return analyzeUpdate(ctx, b, parent);
    case 'DeleteStmt':
      return analyzeDelete(ctx, b, parent);
    default:
      return analyzeMerge(ctx, b, parent);
  }
}

/** `SET col = v`, `SET (a, b) = (…)/ROW(…)/(SELECT …)` on a (possibly configured) table. */
function assignments(ctx: AnalysisContext, targetList: unknown, policy: TablePolicy | undefined, scope: Scope): void {
  const w: Walk = { scope, strict: null };
  let multiSource: Ast | undefined;
  for (const t of items(targetList)) {
    const rt = as(t, 'ResTarget')!;
    const mar = as(rt.val, 'MultiAssignRef');
    // The parser repeats the multi-assignment source under every column; use the first copy only.
    if (mar) {
      if (mar.colno === 1) {
        multiSource = mar.source;
        walkExpr(ctx, multiSource, w);
      }
    } else walkExpr(ctx, rt.val, w);
    const target = encryptedColumn(policy, rt.name);
    if (!target) continue;
    if (items(rt.indirection).length > 0) {
      refuse('unencryptable_value', `cannot encrypt the value written to ${qualified(target)}: it is assigned through a subscript or field`, {
        target,
        location: rt.location,
      });
    }
    if (!mar) {
      flow(ctx, rt.val, scope, target);
      continue;
    }
    const row = as(multiSource, 'RowExpr');
    const sub = as(multiSource, 'SubLink');
    if (row) flow(ctx, items(row.args)[mar.colno - 1], scope, target);
    else if (sub) {
      const col = analyzeSelect(ctx, as(sub.subselect, 'SelectStmt')!, scope).columns?.[mar.colno - 1];
      if (!col) refuse('unencryptable_value', `cannot encrypt the value written to ${qualified(target)}: it comes from a subquery whose columns are unknown`, { target, location: rt.location });
      flowOrigin(ctx, col.origin, target, false, 0, rt.location);
    } else {
      refuse('unencryptable_value', `cannot encrypt the value written to ${qualified(target)}: unsupported multi-column assignment`, { target, location: rt.location });
    }
  }
}

function returning(ctx: AnalysisContext, b: Ast, scope: Scope): QueryOutput {
  const exprs = (b.returningClause?.exprs as Ast[] | undefined) ?? (b.returningList as Ast[] | undefined);
  if (!exprs) return { scope, columns: [] };
  const w: Walk = { scope, strict: null, targets: exprs };
  for (const t of exprs) walkExpr(ctx, as(t, 'ResTarget')?.val, w);
  return { scope, columns: outputColumns(exprs, scope) };
}

function analyzeInsert(ctx: AnalysisContext, b: Ast, parent: Scope): QueryOutput {
  const scope = new Scope(parent);
  if (b.withClause) analyzeWith(ctx, b.withClause, scope);
  const entry = targetEntry(ctx, b.relation);
  const policy = entry.policy;
  const colList = items(b.cols).map((c) => as(c, 'ResTarget')!);
  let cols: readonly string[] | undefined = colList.length > 0 ? colList.map((c) => c.name as string) : entry.columns;
  for (const c of colList) {
    const target = encryptedColumn(policy, c.name);
    if (target && items(c.indirection).length > 0) {
      refuse('unencryptable_value', `cannot encrypt the value written to ${qualified(target)}: it is assigned through a subscript or field`, {
        target,
        location: c.location,
      });
    }
  }
  const sel = as(b.selectStmt, 'SelectStmt');
  if (sel) {
    const out = analyzeSelect(ctx, sel, scope);
    if (policy) {
      if (!cols) unknownColumns(policy, b.relation.location);
      cols.forEach((col, i) => {
        const target = encryptedColumn(policy, col);
        if (!target) return;
        if (!out.columns) {
          refuse('unencryptable_value', `cannot encrypt the value written to ${qualified(target)}: the inserted rows come from a query whose columns are unknown`, {
            target,
            location: b.relation.location,
            hint: 'List the selected columns explicitly instead of *.',
          });
        }
        const src = out.columns[i];
        if (src) flowOrigin(ctx, src.origin, target, false, 0, colList[i]?.location ?? b.relation.location);
      });
    }
  }
  const rscope = new Scope(scope);
  rscope.entries.push(entry);
  const oc = b.onConflictClause as Ast | undefined;
  if (oc) {
    const ocScope = new Scope(scope);
    ocScope.entries.push(entry, { ...entry, refname: 'excluded', relname: 'excluded', hasAlias: true, schema: undefined });
    const w: Walk = { scope: ocScope, strict: null };
    walkExpr(ctx, oc.infer?.indexElems, w);
    walkExpr(ctx, oc.infer?.whereClause, { ...w, strict: 'ON CONFLICT … WHERE' });
    if (oc.action === 'ONCONFLICT_UPDATE') {
      assignments(ctx, oc.targetList, policy, ocScope);
      walkExpr(ctx, oc.whereClause, { ...w, strict: 'ON CONFLICT … WHERE' });
    }
  }
  return returning(ctx, b, rscope);
}

function analyzeUpdate(ctx: AnalysisContext, b: Ast, parent: Scope): QueryOutput {
  const scope = new Scope(parent);
  if (b.withClause) analyzeWith(ctx, b.withClause, scope);
  const entry = targetEntry(ctx, b.relation);
  scope.entries.push(entry);
  buildFrom(ctx, b.fromClause ?? [], scope);
  assignments(ctx, b.targetList, entry.policy, scope);
  walkExpr(ctx, b.whereClause, { scope, strict: 'WHERE' });
  return returning(ctx, b, scope);
}

function analyzeDelete(ctx: AnalysisContext, b: Ast, parent: Scope): QueryOutput {
  const scope = new Scope(parent);
  if (b.withClause) analyzeWith(ctx, b.withClause, scope);
  scope.entries.push(targetEntry(ctx, b.relation));
  buildFrom(ctx, b.usingClause ?? [], scope);
  walkExpr(ctx, b.whereClause, { scope, strict: 'WHERE' });
  return returning(ctx, b, scope);
}

function analyzeMerge(ctx: AnalysisContext, b: Ast, parent: Scope): QueryOutput {
  const scope = new Scope(parent);
  if (b.withClause) analyzeWith(ctx, b.withClause, scope);
  const entry = targetEntry(ctx, b.relation);
  const policy = entry.policy;
  scope.entries.push(entry);
  buildFrom(ctx, [b.sourceRelation], scope);
  const w: Walk = { scope, strict: null };
  walkExpr(ctx, b.joinCondition, { ...w, strict: 'MERGE … ON' });
  for (const item of items(b.mergeWhenClauses)) {
    const m = as(item, 'MergeWhenClause')!;
    walkExpr(ctx, m.condition, { ...w, strict: 'MERGE … WHEN … AND' });
    if (m.commandType === 'CMD_UPDATE') assignments(ctx, m.targetList, policy, scope);
    if (m.commandType !== 'CMD_INSERT') continue;
    const values = items(m.values);
    walkExpr(ctx, values, w);
    if (!policy || values.length === 0) continue;
    const names = items(m.targetList).map((t) => as(t, 'ResTarget')!.name as string);
    const cols = names.length > 0 ? names : entry.columns;
    if (!cols) unknownColumns(policy, locationOf(item) ?? b.relation.location);
    cols.forEach((col, i) => {
      const target = encryptedColumn(policy, col);
      if (target && values[i]) flow(ctx, values[i], scope, target);
    });
  }
  return returning(ctx, b, scope);
}

