// Where, in the client's bytes, each comparison on a searchable column sits, so
// the rewrite (searchable-rewrite.ts) can splice it and keep every other byte.
// The SQL analysis gives the operator's offset and each compared value's token;
// this module finds the rest with Postgres' own scanner: the operands of
// `col = v` (with their casts, COLLATE and parentheses), the elements of
// `IN (…)` / `ARRAY[…]`, and where every `$n` occurs. The grammar accepted is
// exactly what the analysis lets through (a bare column against a parameter or a
// string literal, both optionally cast); anything else throws, and the statement
// is refused rather than rewritten wrongly.
import { scanSync } from 'libpg-query';
import type { ByteRange, PredicateSite } from '../sql/types.js';

interface Tok {
  start: number;
  end: number;
  text: string;
  name: string;
  /** 0 none, 1 unreserved, 2 column name, 3 type/function name, 4 reserved. */
  kw: number;
}

/** One compared value: its token and the expression around it (casts, parentheses) that is repeated per candidate. */
export interface ValueSpot {
  token: ByteRange;
  expr: ByteRange;
  /** The parameter number, or undefined for a string literal. */
  param?: number;
  /** The literal's value (never logged). */
  literal?: string;
}

export type SiteShape =
  /** `col op v` or `v op col` with one value. */
  | { form: 'compare'; op: 'eq' | 'neq' | 'not_distinct' | 'distinct'; operator: ByteRange; column: ByteRange; value: ValueSpot; valueFirst: boolean }
  /** `col [NOT] IN (…)` or `col = ANY(ARRAY[…])`: each value is one element of the list. */
  | { form: 'list'; values: ValueSpot[] }
  /** `col = ANY($n)` / `col <> ALL($n)`: the array parameter itself. */
  | { form: 'array'; value: ValueSpot };

export interface StatementShape {
  sites: { site: PredicateSite; shape: SiteShape }[];
  /** Byte offsets of every `$n` token, by n. */
  paramTokens: Map<number, number[]>;
  /** The highest `$n` in the text (0 = none). */
  maxParam: number;
}

/** The comparison cannot be rewritten safely: the statement is refused. */
export class RewriteError extends Error {
  override readonly name = 'RewriteError';
}

const COMMENTS = new Set(['SQL_COMMENT', 'C_COMMENT']);

export function scanTokens(text: string): Tok[] {
  const out: Tok[] = [];
  let tokens: ReturnType<typeof scanSync>['tokens'];
  try {
    tokens = scanSync(text).tokens;
  } catch (e) {
    throw new RewriteError(`the statement could not be scanned (${(e as Error).name})`);
  }
  for (const t of tokens) {
    if (COMMENTS.has(t.tokenName)) continue;
    out.push({ start: t.start, end: t.end, text: t.text, name: t.tokenName, kw: t.keywordKind });
  }
  return out;
}

const upper = (t: Tok | undefined) => (t ? t.text.toUpperCase() : '');
const isPunct = (t: Tok | undefined, p: string) => t !== undefined && t.kw === 0 && t.text === p;
const isKw = (t: Tok | undefined, w: string) => t !== undefined && t.kw > 0 && upper(t) === w;
const isName = (t: Tok | undefined) => t !== undefined && (t.name === 'IDENT' || (t.kw >= 1 && t.kw <= 3));
const isString = (t: Tok | undefined) => t !== undefined && /^(?:[eEnNbBxX]?'|[uU]&'|\$[^$]*\$)/.test(t.text) && t.name !== 'PARAM';

/** Index of the token starting at byte `at`. */
function tokenAt(toks: Tok[], at: number): number {
  let lo = 0;
  let hi = toks.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = toks[mid]!.start;
    if (s === at) return mid;
    if (s < at) lo = mid + 1;
    else hi = mid - 1;
  }
  throw new RewriteError(`no token at byte ${at}`);
}

/** The matching closer of the opener at `i` (`(`/`)` or `[`/`]`), or -1. */
function matching(toks: Tok[], i: number): number {
  const open = toks[i]!.text;
  const close = open === '(' ? ')' : ']';
  let depth = 0;
  for (let j = i; j < toks.length; j++) {
    const t = toks[j]!;
    if (t.kw !== 0) continue;
    if (t.text === '(' || t.text === '[') depth++;
    else if (t.text === ')' || t.text === ']') {
      depth--;
      if (depth === 0) return t.text === close ? j : -1;
    }
  }
  return -1;
}

/** A qualified name `a.b.c`; returns the index after it, or -1. Reserved words are fine after a dot. */
function nameChain(toks: Tok[], i: number): number {
  if (!isName(toks[i])) return -1;
  let k = i + 1;
  while (isPunct(toks[k], '.') && (isName(toks[k + 1]) || (toks[k + 1]?.kw ?? 0) === 4)) k += 2;
  return k;
}

const MULTIWORD = new Set(['CHARACTER', 'CHAR', 'NATIONAL', 'NCHAR', 'VARYING', 'DOUBLE']);

/** A type name after `::` or `AS`: `text`, `pg_catalog.varchar`, `character varying`, `varchar(10)`, `text[]`. */
function typeName(toks: Tok[], i: number): number {
  let k = nameChain(toks, i);
  if (k < 0) return -1;
  while (MULTIWORD.has(upper(toks[k - 1])) && isName(toks[k]) && !isKw(toks[k], 'COLLATE')) k++;
  if (isPunct(toks[k], '(')) {
    const c = matching(toks, k);
    if (c < 0) return -1;
    k = c + 1;
  }
  for (;;) {
    if (isPunct(toks[k], '[')) {
      const c = matching(toks, k);
      if (c < 0) return -1;
      k = c + 1;
    } else if (isKw(toks[k], 'ARRAY')) k++;
    else return k;
  }
}

/**
 * One operand from token `i`: a column, a parameter, a string literal (the
 * value's own token may span several, `valueEnd`), in parentheses or CAST(…),
 * then `::type` / `COLLATE name` postfixes. Returns the index after it, or -1.
 */
function operand(toks: Tok[], i: number, valueAt: number, valueEnd: number, depth = 0): number {
  const t = toks[i];
  if (!t || depth > 32) return -1;
  let k: number;
  if (isPunct(t, '(')) {
    const j = operand(toks, i + 1, valueAt, valueEnd, depth + 1);
    if (j < 0 || !isPunct(toks[j], ')')) return -1;
    k = j + 1;
  } else if (isKw(t, 'CAST') && isPunct(toks[i + 1], '(')) {
    const j = operand(toks, i + 2, valueAt, valueEnd, depth + 1);
    if (j < 0 || !isKw(toks[j], 'AS')) return -1;
    const e = typeName(toks, j + 1);
    if (e < 0 || !isPunct(toks[e], ')')) return -1;
    k = e + 1;
  } else if (t.start === valueAt) {
    k = i + 1;
    while (k < toks.length && toks[k]!.start < valueEnd) k++;
  } else if (t.name === 'PARAM' || isString(t)) {
    k = i + 1;
    if (/^[uU]&/.test(t.text) && isKw(toks[k], 'UESCAPE')) k += 2;
  } else {
    k = nameChain(toks, i);
    if (k < 0) return -1;
  }
  for (;;) {
    if (toks[k]?.name === 'TYPECAST') {
      k = typeName(toks, k + 1);
      if (k < 0) return -1;
    } else if (isKw(toks[k], 'COLLATE')) {
      k = nameChain(toks, k + 1);
      if (k < 0) return -1;
    } else return k;
  }
}

/** The operand that ends right before token `op` (the outermost one, parentheses included). */
function operandBefore(toks: Tok[], op: number, valueAt: number, valueEnd: number): number {
  let best = -1;
  for (let l = op - 1; l >= 0 && l >= op - 96; l--) if (operand(toks, l, valueAt, valueEnd) === op) best = l;
  if (best < 0) throw new RewriteError('the left operand of a comparison on a searchable column could not be located');
  return best;
}

const span = (toks: Tok[], from: number, to: number): ByteRange => ({ start: toks[from]!.start, end: toks[to - 1]!.end });

/** The identifier the column operand names must be the site's column (guards against a misread operand). */
function checkColumn(toks: Tok[], from: number, to: number, column: string): void {
  let i = from;
  while (i < to && (isPunct(toks[i], '(') || isKw(toks[i], 'CAST'))) i++;
  const end = nameChain(toks, i);
  if (end < 0 || end > to) throw new RewriteError('the column operand of a comparison on a searchable column could not be located');
  const last = toks[end - 1]!.text;
  const name = last.startsWith('"') ? last.slice(1, -1).replaceAll('""', '"') : last.toLowerCase();
  if (name !== column) throw new RewriteError('the column operand of a comparison on a searchable column could not be located');
}

interface Spot {
  at: number;
  end: number;
  param?: number;
  literal?: string;
}

/** The values a site compares, in text order, as spots whose expression is only their token (no scan needed). */
export function valuesOf(site: PredicateSite): ValueSpot[] {
  return spotsOf(site).map((s) => valueSpot(s, { start: s.at, end: s.end }));
}

function spotsOf(site: PredicateSite): Spot[] {
  return [
    ...site.params.map((p) => ({ at: p.start, end: p.end, param: p.param })),
    ...site.literals.map((l) => ({ at: l.start, end: l.end, literal: l.value })),
  ].sort((a, b) => a.at - b.at);
}

const valueSpot = (s: Spot, expr: ByteRange): ValueSpot => ({
  token: { start: s.at, end: s.end },
  expr,
  ...(s.param !== undefined && { param: s.param }),
  ...(s.literal !== undefined && { literal: s.literal }),
});

function compareShape(toks: Tok[], site: PredicateSite): SiteShape {
  const spots = spotsOf(site);
  if (spots.length !== 1) throw new RewriteError('a comparison on a searchable column compares more than one value');
  const v = spots[0]!;
  const i = tokenAt(toks, site.location);
  let j = i + 1;
  let op: 'eq' | 'neq' | 'not_distinct' | 'distinct';
  const t = toks[i]!;
  if (t.text === '=') op = 'eq';
  else if (t.text === '<>' || t.text === '!=') op = 'neq';
  else if (isKw(t, 'IS')) {
    const not = isKw(toks[j], 'NOT');
    if (not) j++;
    if (!isKw(toks[j], 'DISTINCT') || !isKw(toks[j + 1], 'FROM')) throw new RewriteError('unexpected operator');
    j += 2;
    op = not ? 'not_distinct' : 'distinct';
  } else throw new RewriteError('unexpected operator');
  if ((site.kind === 'eq') !== (op === 'eq' || op === 'not_distinct')) throw new RewriteError('operator and comparison kind disagree');
  const r = operand(toks, j, v.at, v.end);
  if (r < 0) throw new RewriteError('the right operand of a comparison on a searchable column could not be located');
  const l = operandBefore(toks, i, v.at, v.end);
  const left = span(toks, l, i);
  const right = span(toks, j, r);
  const valueFirst = v.at < left.end;
  if (valueFirst ? v.at < left.start : v.at < right.start || v.at >= right.end) throw new RewriteError('the compared value is not an operand');
  if (valueFirst) checkColumn(toks, j, r, site.target.column);
  else checkColumn(toks, l, i, site.target.column);
  return {
    form: 'compare',
    op,
    operator: { start: t.start, end: toks[j - 1]!.end },
    column: valueFirst ? right : left,
    value: valueSpot(v, valueFirst ? left : right),
    valueFirst,
  };
}

/** Elements of the list opened at token `open` (`(` or `[`), split at top-level commas. */
function elements(toks: Tok[], open: number): { from: number; to: number }[] {
  const close = matching(toks, open);
  if (close < 0) throw new RewriteError('unbalanced list');
  const out: { from: number; to: number }[] = [];
  let from = open + 1;
  let depth = 0;
  for (let k = open + 1; k <= close; k++) {
    const t = toks[k]!;
    if (t.kw === 0 && (t.text === '(' || t.text === '[')) depth++;
    else if (t.kw === 0 && (t.text === ')' || t.text === ']') && k !== close) depth--;
    else if (k === close || (depth === 0 && isPunct(t, ','))) {
      out.push({ from, to: k });
      from = k + 1;
    }
  }
  return out;
}

function listShape(toks: Tok[], open: number, spots: Spot[]): SiteShape {
  const els = elements(toks, open);
  const values = spots.map((s) => {
    const idx = tokenAt(toks, s.at);
    const el = els.find((e) => e.from <= idx && idx < e.to);
    if (!el || el.to === el.from || operand(toks, el.from, s.at, s.end) !== el.to) {
      throw new RewriteError('a list element compared with a searchable column could not be located');
    }
    return valueSpot(s, span(toks, el.from, el.to));
  });
  return { form: 'list', values };
}

function inShape(toks: Tok[], site: PredicateSite): SiteShape {
  let i = tokenAt(toks, site.location);
  if (isKw(toks[i], 'NOT')) i++;
  if (!isKw(toks[i], 'IN') || !isPunct(toks[i + 1], '(')) throw new RewriteError('unexpected IN list');
  return listShape(toks, i + 1, spotsOf(site));
}

function anyShape(toks: Tok[], site: PredicateSite): SiteShape {
  const i = tokenAt(toks, site.location);
  const w = upper(toks[i + 1]);
  if (!(w === 'ANY' || w === 'SOME' || w === 'ALL') || !isPunct(toks[i + 2], '(')) throw new RewriteError('unexpected ANY/ALL');
  const open = i + 2;
  const close = matching(toks, open);
  if (close < 0) throw new RewriteError('unbalanced ANY/ALL');
  const spots = spotsOf(site);
  // ARRAY[…] (optionally in parentheses or cast): the elements are the values.
  let k = open + 1;
  while (isPunct(toks[k], '(')) k++;
  if (isKw(toks[k], 'ARRAY') && isPunct(toks[k + 1], '[')) return listShape(toks, k + 1, spots);
  const v = spots[0];
  if (spots.length !== 1 || v?.param === undefined || operand(toks, open + 1, v.at, v.end) !== close) {
    throw new RewriteError('the array compared with a searchable column could not be located');
  }
  return { form: 'array', value: valueSpot(v, { start: v.at, end: v.end }) };
}

/** The shape of every predicate site of a statement, and where its parameters occur. Throws RewriteError. */
export function statementShape(text: string, sites: readonly PredicateSite[]): StatementShape {
  const toks = scanTokens(text);
  const paramTokens = new Map<number, number[]>();
  let maxParam = 0;
  for (const t of toks) {
    if (t.name !== 'PARAM') continue;
    const n = Number(t.text.slice(1));
    maxParam = Math.max(maxParam, n);
    const list = paramTokens.get(n) ?? [];
    list.push(t.start);
    paramTokens.set(n, list);
  }
  const out: StatementShape = { sites: [], paramTokens, maxParam };
  for (const site of sites) {
    const shape = site.kind === 'in' ? inShape(toks, site) : site.kind === 'any' ? anyShape(toks, site) : compareShape(toks, site);
    out.sites.push({ site, shape });
  }
  return out;
}
