// DDL that writes values into encrypted columns:
//  - CREATE TABLE AS / SELECT INTO / CREATE MATERIALIZED VIEW creating a
//    configured table: its rows are values like an INSERT … SELECT;
//  - a string-literal DEFAULT on a configured column (ADD COLUMN … DEFAULT fills
//    every existing row; later INSERTs use it): the literal is encrypted; other
//    default expressions are computed by the server and stored as they are;
//  - GENERATED … STORED, ALTER COLUMN … SET EXPRESSION and ALTER COLUMN … TYPE
//    … USING compute values on the server: refused unless the value is the
//    column itself (a cast) or a literal.
import type { TablePolicy } from '../config/types.js';
import { as, items, strings, unwrap, type Ast } from './ast.js';
import type { AnalysisContext, QueryOutput } from './context.js';
import { qualified, refuse } from './errors.js';
import { Scope } from './scope.js';
import type { ColumnTarget } from './types.js';
import { flow, flowOrigin } from './values.js';
import { encryptedColumn } from './writes.js';

/** Rows of `query` become the new relation `into` (CREATE TABLE AS, SELECT INTO). */
export function checkCreateAs(ctx: AnalysisContext, into: Ast, out: QueryOutput): void {
  const policy = ctx.lookupTable(into.rel);
  if (!policy || into.skipData) return;
  const names = strings(into.colNames);
  const cols = out.columns;
  for (const cp of policy.columns) {
    const target = encryptedColumn(policy, cp.column)!;
    let i = names.indexOf(cp.column);
    if (i < 0 && cols) i = cols.findIndex((c, k) => k >= names.length && c.name === cp.column);
    if (!cols) {
      refuse('unencryptable_value', `cannot encrypt the values of ${qualified(target)} created from a query whose columns are unknown`, {
        target,
        location: into.rel.location,
      });
    }
    if (i >= 0 && cols[i]) flowOrigin(ctx, cols[i]!.origin, target, false, 0, into.rel.location);
  }
}

/** A default: literals are encrypted in place, NULL/'' need nothing, expressions are the server's. */
function checkDefault(ctx: AnalysisContext, expr: Ast | undefined, target: ColumnTarget): void {
  if (!expr) return;
  const k = as(unwrap(expr).expr, 'A_Const');
  if (k && (k.isnull || k.sval !== undefined)) flow(ctx, expr, new Scope(), target);
}

/** A value the server computes for every row: only the column itself (USING col::type) or a literal. */
function checkComputed(ctx: AnalysisContext, expr: Ast | undefined, target: ColumnTarget, scope: Scope): void {
  if (expr) flow(ctx, expr, scope, target);
}

function tableScope(ctx: AnalysisContext, rv: Ast, policy: TablePolicy): Scope {
  const scope = new Scope();
  scope.entries.push({
    kind: 'table',
    refname: rv.relname,
    schema: rv.schemaname,
    relname: rv.relname,
    hasAlias: false,
    policy,
    columns: ctx.columnsOf(policy.schema, policy.table),
  });
  return scope;
}

function checkColumnDef(ctx: AnalysisContext, def: Ast, policy: TablePolicy, scope: Scope, name?: string): void {
  const target = encryptedColumn(policy, name ?? def.colname);
  if (!target) return;
  for (const c of items(def.constraints)) {
    const con = as(c, 'Constraint');
    if (con?.contype === 'CONSTR_DEFAULT') checkDefault(ctx, con.raw_expr, target);
    if (con?.contype === 'CONSTR_GENERATED') checkComputed(ctx, con.raw_expr, target, scope);
  }
  checkComputed(ctx, def.raw_default, target, scope); // ALTER COLUMN … TYPE … USING
}

/** CREATE TABLE / ALTER TABLE on a configured table. */
export function checkTableDdl(ctx: AnalysisContext, type: 'CreateStmt' | 'AlterTableStmt', b: Ast): void {
  const policy = ctx.lookupTable(b.relation);
  if (!policy) return;
  const scope = tableScope(ctx, b.relation, policy);
  if (type === 'CreateStmt') {
    for (const e of items(b.tableElts)) {
      const def = as(e, 'ColumnDef');
      if (def) checkColumnDef(ctx, def, policy, scope);
    }
    return;
  }
  for (const c of items(b.cmds)) {
    const cmd = as(c, 'AlterTableCmd');
    if (!cmd) continue;
    const def = as(cmd.def, 'ColumnDef');
    if (def) checkColumnDef(ctx, def, policy, scope, cmd.subtype === 'AT_AddColumn' ? undefined : cmd.name);
    const target = encryptedColumn(policy, cmd.name);
    if (!target) continue;
    if (cmd.subtype === 'AT_ColumnDefault') checkDefault(ctx, cmd.def, target);
    if (cmd.subtype === 'AT_SetExpression') checkComputed(ctx, cmd.def, target, scope);
  }
}
