// Comparisons, ordering and grouping on encrypted columns. The server only sees
// ciphertext, so:
//  - a non-searchable column compared with a value can never match → refused;
//  - a searchable column (deterministic encryption, issue 6) supports =, <>, IN,
//    = ANY(…) with parameters or string literals → recorded as a predicate site;
//  - LIKE, <, >, BETWEEN, ORDER BY, GROUP BY, functions over the column → refused;
//  - IS [NOT] NULL, comparisons with NULL and with '' (empty strings stay empty)
//    are allowed, as is equality between two searchable columns with one policy;
//  - row comparisons are checked member by member, and a searchable member
//    compared with a value is refused: a row cannot hold its candidate list.
// Never a silently wrong result: a clear error instead.
import { as, describe, items, locationOf, strings, unwrap, type Ast } from './ast.js';
import { samePolicy, type AnalysisContext, type PredicateDraft } from './context.js';
import { qualified, refuse } from './errors.js';
import { analyzeSelect, walkExpr, type Walk } from './query.js';
import type { Scope } from './scope.js';
import type { ColumnTarget } from './types.js';
import { bareEncrypted, originTarget } from './values.js';

type Shape = { kind: 'eq' | 'neq' | 'in' | 'any'; negated: boolean } | 'nullif' | 'other';

const COMPARISON_OPS = new Set(['=', '<>', '<', '>', '<=', '>=', '~~', '~~*', '!~~', '!~~*', '~', '~*', '!~', '!~*', '^@', '@@']);
const JSON_OPS = new Set(['->', '->>', '#>', '#>>']);
const OP_WORDS: Record<string, string> = { '~~': 'LIKE', '~~*': 'ILIKE', '!~~': 'NOT LIKE', '!~~*': 'NOT ILIKE' };

function shapeOf(kind: string, op: string): Shape {
  switch (kind) {
    case 'AEXPR_OP':
      return op === '=' ? { kind: 'eq', negated: false } : op === '<>' ? { kind: 'neq', negated: false } : 'other';
    case 'AEXPR_NOT_DISTINCT':
      return { kind: 'eq', negated: false };
    case 'AEXPR_DISTINCT':
      return { kind: 'neq', negated: false };
    case 'AEXPR_IN':
      return { kind: 'in', negated: op === '<>' };
    case 'AEXPR_OP_ANY':
      return op === '=' ? { kind: 'any', negated: false } : 'other';
    case 'AEXPR_OP_ALL':
      return op === '<>' ? { kind: 'any', negated: true } : 'other';
    case 'AEXPR_NULLIF':
      return 'nullif';
    default:
      return 'other';
  }
}

function opText(kind: string, op: string): string {
  if (kind.includes('BETWEEN')) return 'BETWEEN';
  if (kind === 'AEXPR_SIMILAR') return 'SIMILAR TO';
  if (kind === 'AEXPR_IN') return op === '<>' ? 'NOT IN' : 'IN';
  if (kind === 'AEXPR_DISTINCT') return 'IS DISTINCT FROM';
  if (kind === 'AEXPR_NOT_DISTINCT') return 'IS NOT DISTINCT FROM';
  if (kind === 'AEXPR_NULLIF') return 'NULLIF';
  if (kind === 'AEXPR_OP_ANY') return `${op} ANY`;
  if (kind === 'AEXPR_OP_ALL') return `${op} ALL`;
  return OP_WORDS[op] ?? op;
}

function notSearchable(target: ColumnTarget, op: string, location: number | undefined): never {
  refuse('not_searchable', `column ${qualified(target)} is encrypted and not searchable: a comparison with ${op} can never match`, {
    target,
    location,
    hint: 'Filter on another column, or mark the column searchable in the pgcmek configuration.',
  });
}

function unsupported(target: ColumnTarget, op: string, location: number | undefined): never {
  refuse('unsupported_operator', `operator ${op} cannot be applied to encrypted column ${qualified(target)}: the server only sees ciphertext`, {
    target,
    location,
    hint: target.policy.searchable
      ? 'Searchable encrypted columns support =, <>, IN and = ANY(...) with bind parameters or string literals.'
      : undefined,
  });
}

/** Two searchable columns with different keys: equal plaintexts are different strings there. */
function differentKeys(a: ColumnTarget, b: ColumnTarget, op: string, location: number | undefined): never {
  refuse('unsupported_operator', `searchable columns ${qualified(a)} and ${qualified(b)} have different keys: a comparison with ${op} between them can never match`, {
    target: a,
    location,
    hint: 'Give both columns the same key_group in the pgcmek configuration (docs/SEARCHABLE.md §4).',
  });
}

/** Handle an A_Expr; returns false when it is not a comparison (the caller walks it generically). */
export function handleAExpr(ctx: AnalysisContext, b: Ast, w: Walk): boolean {
  const kind = b.kind as string;
  const names = strings(b.name);
  const op = names[names.length - 1] ?? '?';
  if (kind === 'AEXPR_OP' && JSON_OPS.has(op)) return handleJsonAccess(ctx, b, w);
  if (kind === 'AEXPR_OP' && !COMPARISON_OPS.has(op)) return false;
  const shape = shapeOf(kind, op);
  const text = opText(kind, op);
  const rows = rowPairs(b, shape);
  if (rows) {
    // Member by member, a row IN list is an equality: two columns sharing a key may be compared.
    const member: Shape = shape !== 'other' && shape !== 'nullif' && shape.kind === 'in' ? { kind: 'eq', negated: false } : shape;
    for (const [l, r] of rows) {
      const site = compare(ctx, l, [r], member, text, w, b.location);
      if (site) refuseRowComparison(site, text);
    }
    return true;
  }
  const listed = kind === 'AEXPR_IN' || kind.includes('BETWEEN');
  const site = compare(ctx, b.lexpr, listed ? items(b.rexpr) : [b.rexpr], shape, text, w, b.location);
  if (site) record(ctx, site);
  return true;
}

/**
 * The member pairs of a row comparison: `(a, b) = (x, y)`, `<>`, `IS [NOT]
 * DISTINCT FROM`, and `(a, b) [NOT] IN ((x, y), …)` (one pair per member per
 * row of the list). Undefined when it is not one (other forms are walked as
 * expressions, which refuses an encrypted column inside them).
 */
function rowPairs(b: Ast, shape: Shape): [Ast, Ast][] | undefined {
  if (shape === 'other' || shape === 'nullif' || shape.kind === 'any') return undefined;
  const lrow = as(b.lexpr, 'RowExpr');
  if (!lrow) return undefined;
  const la = items(lrow.args);
  const rights = shape.kind === 'in' ? items(b.rexpr) : [b.rexpr];
  const pairs: [Ast, Ast][] = [];
  for (const r of rights) {
    const rrow = as(r, 'RowExpr');
    const ra = rrow ? items(rrow.args) : [];
    if (!rrow || ra.length !== la.length) return undefined;
    la.forEach((l, i) => pairs.push([l, ra[i]!]));
  }
  return pairs;
}

/**
 * A searchable column compared with a value inside a row comparison. Each
 * member pair would need its value widened to the column's candidates, and a
 * row has no place for a candidate list: the row form stays refused in both
 * protocols (never a row that silently matches nothing during a rotation).
 */
function refuseRowComparison(site: PredicateDraft, op: string): never {
  refuse(
    'unsupported_operator',
    `a row comparison (${op}) on searchable column ${qualified(site.target)} cannot be rewritten: the proxy widens each compared value to its stored forms, which a row cannot hold`,
    {
      target: site.target,
      location: site.location,
      hint: `Compare the column on its own, e.g. ${site.target.column} = $1 AND other_column = $2, or ${site.target.column} IN (…).`,
    },
  );
}

/**
 * Keeps a comparison site, keyed by its operator. The same comparison walked
 * again is the same site; two different ones at one operator would drop a value
 * from the rewrite (it would reach the server unencrypted), so that is refused.
 */
function record(ctx: AnalysisContext, site: PredicateDraft): void {
  const prev = ctx.predicates.get(site.location);
  if (prev && JSON.stringify([prev.target, prev.params, prev.literals]) !== JSON.stringify([site.target, site.params, site.literals])) {
    refuse('internal', `two comparisons on searchable column ${qualified(site.target)} share one operator`, { target: site.target, location: site.location });
  }
  for (const p of site.params) ctx.claimPredicateParam(p.param, p.location);
  ctx.predicates.set(site.location, site);
}

/** Checks one comparison; returns the site to rewrite when a searchable column is compared with values. */
function compare(ctx: AnalysisContext, lhs: Ast, rhs: Ast[], shape: Shape, op: string, w: Walk, location: number): PredicateDraft | undefined {
  const scope = w.scope;
  const encL = bareEncrypted(lhs, scope);
  const single = rhs.length === 1 && (shape === 'other' || shape === 'nullif' || shape.kind !== 'any');
  const encR = single ? bareEncrypted(rhs[0], scope) : undefined;
  const strict: Walk = { ...w, strict: w.strict ?? 'a comparison' };
  if (!encL && !encR) {
    for (const r of rhs) {
      const t = bareEncrypted(r, scope);
      if (t) unsupported(t, op, locationOf(r));
    }
    walkExpr(ctx, lhs, strict);
    for (const r of rhs) walkExpr(ctx, r, strict);
    return undefined;
  }
  if (encL && encR) {
    const equality = shape !== 'other' && shape !== 'nullif' && (shape.kind === 'eq' || shape.kind === 'neq');
    if (equality && encL.policy.searchable && encR.policy.searchable && samePolicy(encL.policy, encR.policy)) return undefined;
    if (equality && encL.policy.searchable && encR.policy.searchable) differentKeys(encL, encR, op, location);
    if (equality && !(encL.policy.searchable && encR.policy.searchable)) notSearchable(encL.policy.searchable ? encR : encL, op, location);
    unsupported(encL, op, location);
  }
  const target = (encL ?? encR)!;
  if (shape === 'other') unsupported(target, op, location);
  const values = encL ? rhs : [lhs];
  const params: { param: number; location: number }[] = [];
  const literals: { location: number; value: string }[] = [];
  const scalar = (v: Ast) => classify(ctx, v, target, op, false, params, literals);
  for (const v of values) {
    if (shape !== 'nullif' && shape.kind === 'any') {
      const u = unwrap(v);
      const arr = as(u.expr, 'A_ArrayExpr');
      if (arr && u.casts.every((c) => c.textLike && c.isArray)) items(arr.elements).forEach(scalar);
      else classify(ctx, v, target, op, true, params, literals);
    } else scalar(v);
  }
  if (params.length === 0 && literals.length === 0) return undefined; // only NULL / '' compared
  if (!target.policy.searchable) notSearchable(target, op, location);
  if (shape === 'nullif' || target.policy.jsonPaths) unsupported(target, op, location);
  return { ...shape, target, params, literals, location };
}

/** A compared value: a parameter, a string literal, NULL or '' — anything else is refused. */
function classify(
  ctx: AnalysisContext,
  v: Ast,
  target: ColumnTarget,
  op: string,
  array: boolean,
  params: { param: number; location: number }[],
  literals: { location: number; value: string }[],
): void {
  const { expr, casts } = unwrap(v);
  for (const c of casts) {
    if (!c.textLike || c.isArray !== array) {
      refuse('unsupported_cast', `encrypted column ${qualified(target)} is compared (${op}) with a value cast to ${c.name}${c.isArray ? '[]' : ''}`, {
        target,
        location: locationOf(v),
      });
    }
  }
  const k = as(expr, 'A_Const');
  if (k?.isnull) return;
  if (k?.sval !== undefined && !array) {
    const value = (k.sval.sval as string | undefined) ?? '';
    if (value === '' && !target.policy.encryptEmpty) return;
    literals.push({ location: k.location, value });
    return;
  }
  const p = as(expr, 'ParamRef');
  if (p) {
    params.push({ param: p.number, location: p.location });
    return;
  }
  if (!target.policy.searchable) notSearchable(target, op, locationOf(v));
  refuse(
    'encrypted_expression',
    `encrypted column ${qualified(target)} is compared (${op}) with ${describe(expr)}; only bind parameters and string literals can be encrypted for comparison`,
    { target, location: locationOf(v) },
  );
}

/** `x IN (SELECT …)`, `x = ANY (SELECT …)`, `x <> ALL (SELECT …)`, and `(x, y) IN (SELECT a, b …)` member by member. */
export function handleSubLinkComparison(ctx: AnalysisContext, b: Ast, w: Walk): void {
  const sub = analyzeSelect(ctx, as(b.subselect, 'SelectStmt')!, w.scope);
  const names = strings(b.operName);
  const op = names[names.length - 1] ?? '=';
  const kind = b.subLinkType as string;
  const equality = (kind === 'ANY_SUBLINK' && op === '=') || (kind === 'ALL_SUBLINK' && op === '<>');
  const text = `${op} ${kind === 'ALL_SUBLINK' ? 'ALL' : 'ANY'} (subquery)`;
  const row = as(b.testexpr, 'RowExpr');
  // A row is compared with the subquery's columns in order: each member with its column.
  const tests = row ? items(row.args) : [b.testexpr];
  tests.forEach((test, i) => {
    const subCol = sub.columns?.[i];
    const encS = subCol ? originTarget(subCol.origin, 0) : undefined;
    subLinkMember(ctx, test, bareEncrypted(test, w.scope), encS, equality, text, w, b.location);
  });
}

function subLinkMember(
  ctx: AnalysisContext,
  test: Ast,
  encT: ColumnTarget | undefined,
  encS: ColumnTarget | undefined,
  equality: boolean,
  text: string,
  w: Walk,
  location: number,
): void {
  if (!encT && !encS) {
    walkExpr(ctx, test, { ...w, strict: w.strict ?? 'a comparison' });
    return;
  }
  if (encT && encS && equality && encT.policy.searchable && encS.policy.searchable && samePolicy(encT.policy, encS.policy)) return;
  if (encT && encS && equality && encT.policy.searchable && encS.policy.searchable) differentKeys(encT, encS, text, location);
  const t = (encT ?? encS)!;
  if (!equality) unsupported(t, text, location);
  if (!t.policy.searchable || (encT && encS)) notSearchable(encT && !encT.policy.searchable ? encT : encS ?? t, text, location);
  refuse(
    'encrypted_expression',
    `encrypted column ${qualified(t)} is compared with a subquery column that is not encrypted with the same policy`,
    { target: t, location },
  );
}

/** ORDER BY / GROUP BY item: refuse an encrypted column (directly, by position or by output alias). */
export function checkOrdering(ctx: AnalysisContext, node: Ast, w: Walk, label: string): void {
  let expr = node;
  const k = as(unwrap(node).expr, 'A_Const');
  const targets = w.targets ?? [];
  if (k?.ival !== undefined) {
    const rt = as(targets[(k.ival.ival as number) - 1], 'ResTarget');
    if (rt?.val) expr = rt.val;
  } else {
    const cr = as(node, 'ColumnRef');
    const f = cr ? strings(cr.fields) : [];
    if (f.length === 1) {
      const rt = targets.map((t) => as(t, 'ResTarget')).find((t) => t?.name === f[0]);
      if (rt?.val) expr = rt.val;
    }
  }
  const t = bareEncrypted(expr, w.scope);
  if (t) {
    refuse('encrypted_expression', `${label} on encrypted column ${qualified(t)} is refused: the server would order ciphertext`, {
      target: t,
      location: locationOf(node) ?? locationOf(expr),
    });
  }
  walkExpr(ctx, node, { ...w, strict: label });
}

/** `JOIN … USING (col)`: an equality between the two sides' columns. */
export function checkUsing(names: string[], left: Scope, right: Scope, location: number | undefined): void {
  for (const n of names) {
    const fake = { ColumnRef: { fields: [{ String: { sval: n } }] } };
    const l = bareEncrypted(fake, left);
    const r = bareEncrypted(fake, right);
    if (!l && !r) continue;
    if (l && r && l.policy.searchable && r.policy.searchable && samePolicy(l.policy, r.policy)) continue;
    const t = (l ?? r)!;
    if (!l || !r) {
      refuse('encrypted_expression', `JOIN USING (${n}) compares encrypted column ${qualified(t)} with a column that is not encrypted`, {
        target: t,
        location,
      });
    }
    notSearchable(l.policy.searchable ? r : l, `JOIN USING (${n})`, location);
  }
}

function parseTextArray(s: string): string[] | undefined {
  const m = /^\{(.*)\}$/s.exec(s.trim());
  if (!m || /["\\]/.test(m[1]!)) return undefined;
  return m[1]!.split(',').map((x) => x.trim());
}

function isPrefix(a: string[], b: string[]): boolean {
  return a.length <= b.length && a.every((x, i) => x === b[i]);
}

/** `doc -> 'a' ->> 'b'` on a jsonb column with encrypted JSON paths. */
function handleJsonAccess(ctx: AnalysisContext, b: Ast, w: Walk): boolean {
  const path: string[] = [];
  let unknown = false;
  const keys: Ast[] = [];
  let cur: Ast | undefined = b;
  let base: Ast = b.lexpr;
  while (cur) {
    const op = strings(cur.name).pop()!;
    keys.push(cur.rexpr);
    const key = as(unwrap(cur.rexpr).expr, 'A_Const');
    if (op === '->' || op === '->>') {
      const v = key?.sval?.sval ?? (key?.ival ? String(key.ival.ival ?? 0) : undefined);
      if (v === undefined) unknown = true;
      else path.unshift(v as string);
    } else {
      const parts = typeof key?.sval?.sval === 'string' ? parseTextArray(key.sval.sval) : undefined;
      if (!parts) unknown = true;
      else path.unshift(...parts);
    }
    base = cur.lexpr;
    const inner = as(unwrap(base).expr, 'A_Expr');
    const innerOp = inner ? strings(inner.name).pop() : undefined;
    cur = inner && inner.kind === 'AEXPR_OP' && innerOp && JSON_OPS.has(innerOp) ? inner : undefined;
  }
  const target = bareEncrypted(base, w.scope);
  if (!target) return false;
  for (const k of keys) walkExpr(ctx, k, { ...w, strict: null });
  const paths = target.policy.jsonPaths;
  const overlaps = !paths || unknown || paths.some((p) => isPrefix(p, path) || isPrefix(path, p));
  if (overlaps && w.strict) {
    refuse('encrypted_expression', `encrypted column ${qualified(target)} is used inside an expression in ${w.strict}: the server only sees ciphertext`, {
      target,
      location: b.location,
    });
  }
  return true;
}

/** Used by the walker for a bare encrypted column met in a strict context. */
export function refuseInExpression(target: ColumnTarget, label: string, location: number | undefined): never {
  refuse('encrypted_expression', `encrypted column ${qualified(target)} is used inside an expression in ${label}: the server only sees ciphertext`, {
    target,
    location,
  });
}
