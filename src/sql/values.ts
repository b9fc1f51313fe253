// Values on their way into an encrypted column. `flow` follows one expression to
// where its value comes from and records what the encryption layer must do:
// encrypt Bind parameter $n, replace a string literal, or nothing (NULL, DEFAULT,
// '' when empty strings stay empty, ciphertext copied from an encrypted column
// with the same policy). Anything else — a function, an operator, a plain column,
// a non-string constant — is refused: the proxy cannot see the value the server
// would compute, so it cannot encrypt it.
import { as, describe, items, locationOf, strings, typeOf, unwrap, type Ast } from './ast.js';
import { samePolicy, type AnalysisContext } from './context.js';
import { HINT_SEND_VALUE, qualified, refuse } from './errors.js';
import { analyzeSelect } from './query.js';
import { resolveColumn, type Origin, type Scope } from './scope.js';
import type { ColumnTarget } from './types.js';

const MAX_DEPTH = 64;

function unencryptable(target: ColumnTarget, what: string, location: number | undefined): never {
  refuse('unencryptable_value', `cannot encrypt the value written to ${qualified(target)}: it is ${what}`, {
    target,
    location,
    hint: HINT_SEND_VALUE,
  });
}

/**
 * Record how the value of `expr` (evaluated in `scope`) reaches `target`.
 * `elements`: `expr` is an array whose elements are the values (unnest).
 */
export function flow(ctx: AnalysisContext, expr: Ast | undefined, scope: Scope, target: ColumnTarget, elements = false, depth = 0): void {
  if (expr === undefined) return;
  if (depth > MAX_DEPTH) unencryptable(target, 'derived through too many levels', locationOf(expr));
  const { expr: e, casts } = unwrap(expr);
  for (const c of casts) {
    if (!c.textLike || c.isArray !== elements) {
      refuse('unsupported_cast', `cannot encrypt the value written to ${qualified(target)}: it is cast to ${c.name}${c.isArray ? '[]' : ''}`, {
        target,
        location: locationOf(expr),
        hint: 'Encrypted columns take text values; cast to text (or the column type) or drop the cast.',
      });
    }
  }
  const type = typeOf(e);
  const b = type ? (e[type] as Ast) : e;
  switch (type) {
    case 'A_Const': {
      if (b.isnull) return;
      if (b.sval !== undefined) {
        if (elements) unencryptable(target, 'an array given as a string literal', b.location);
        const value = (b.sval.sval as string | undefined) ?? '';
        if (value === '' && !target.policy.encryptEmpty) return;
        ctx.claimLiteral(b.location, value, target);
        return;
      }
      refuse('non_string_constant', `cannot encrypt the value written to ${qualified(target)}: it is a non-string constant`, {
        target,
        location: b.location,
        hint: 'Write the value as a string literal (quoted) or a bind parameter.',
      });
    }
    case 'ParamRef':
      ctx.claimValueParam(b.number, b.location, target, elements);
      return;
    case 'SetToDefault':
      return;
    case 'ColumnRef': {
      const fields = b.fields as Ast[];
      if (typeOf(fields[fields.length - 1]) === 'A_Star') unencryptable(target, 'a whole-row reference', b.location);
      flowOrigin(ctx, resolveColumn(strings(fields), scope), target, elements, depth + 1, b.location);
      return;
    }
    case 'CaseExpr':
      for (const w of items(b.args)) flow(ctx, as(w, 'CaseWhen')?.result, scope, target, elements, depth + 1);
      flow(ctx, b.defresult, scope, target, elements, depth + 1);
      return;
    case 'CoalesceExpr':
      for (const a of items(b.args)) flow(ctx, a, scope, target, elements, depth + 1);
      return;
    case 'A_ArrayExpr':
      if (!elements) break;
      for (const el of items(b.elements)) flow(ctx, el, scope, target, false, depth + 1);
      return;
    case 'FuncCall': {
      // SELECT unnest($1::text[]): each element is a value.
      const name = strings(b.funcname);
      const args = items(b.args);
      if (!elements && name[name.length - 1] === 'unnest' && (name.length === 1 || name[0] === 'pg_catalog') && args.length === 1 && !b.agg_star && !b.over) {
        flow(ctx, args[0], scope, target, true, depth + 1);
        return;
      }
      break;
    }
    case 'SubLink': {
      const kind = b.subLinkType as string;
      if ((kind === 'EXPR_SUBLINK' && !elements) || (kind === 'ARRAY_SUBLINK' && elements)) {
        const out = analyzeSelect(ctx, as(b.subselect, 'SelectStmt')!, scope);
        const first = out.columns?.[0];
        if (!first) unencryptable(target, 'a subquery whose columns are unknown', b.location);
        flowOrigin(ctx, first.origin, target, false, depth + 1, b.location);
        return;
      }
      break;
    }
  }
  unencryptable(target, describe(e), locationOf(e) ?? locationOf(expr));
}

/** Follow a resolved column: ciphertext copies are fine, derived columns are followed to their sources. */
export function flowOrigin(
  ctx: AnalysisContext,
  origin: Origin,
  target: ColumnTarget,
  elements: boolean,
  depth: number,
  location: number | undefined,
): void {
  if (depth > MAX_DEPTH) unencryptable(target, 'derived through too many levels', location);
  switch (origin.kind) {
    case 'encrypted':
      if (elements) unencryptable(target, 'an array built from an encrypted column', location);
      if (!samePolicy(origin.target.policy, target.policy)) {
        refuse(
          'incompatible_copy',
          `cannot copy ${qualified(origin.target)} into ${qualified(target)}: the columns have different encryption policies`,
          { target, location },
        );
      }
      return;
    case 'derived':
      for (const s of origin.sources) {
        if (elements && s.elements) unencryptable(target, 'a nested array', location);
        flow(ctx, s.expr, s.scope, target, elements || s.elements, depth + 1);
      }
      return;
    case 'union':
      for (const o of origin.origins) flowOrigin(ctx, o, target, elements, depth + 1, location);
      return;
    case 'plain':
      unencryptable(target, 'copied from a column that is not encrypted', location);
    case 'unknown':
      unencryptable(target, 'copied from a column the proxy cannot resolve to an encrypted column', location);
  }
}

/**
 * The encrypted column an expression is a bare reference to (through casts,
 * COLLATE, subquery/CTE columns), if any.
 */
export function bareEncrypted(expr: Ast | undefined, scope: Scope, depth = 0): ColumnTarget | undefined {
  if (!expr || depth > MAX_DEPTH) return undefined;
  const e = unwrap(expr).expr;
  const cr = as(e, 'ColumnRef');
  if (!cr) return undefined;
  const fields = cr.fields as Ast[];
  if (typeOf(fields[fields.length - 1]) === 'A_Star') return undefined;
  return originTarget(resolveColumn(strings(fields), scope), depth + 1);
}

export function originTarget(origin: Origin, depth: number): ColumnTarget | undefined {
  if (depth > MAX_DEPTH) return undefined;
  switch (origin.kind) {
    case 'encrypted':
      return origin.target;
    case 'derived':
    case 'union': {
      const parts =
        origin.kind === 'derived'
          ? origin.sources.map((s) => (s.elements ? undefined : bareEncrypted(s.expr, s.scope, depth + 1)))
          : origin.origins.map((o) => originTarget(o, depth + 1));
      const first = parts[0];
      if (!first || parts.some((p) => !p || !samePolicy(p.policy, first.policy))) return undefined;
      return first;
    }
    default:
      return undefined;
  }
}
