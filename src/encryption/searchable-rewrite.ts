// Rewriting comparisons on searchable columns (docs/SEARCHABLE.md §4). A value
// compared with such a column has several stored forms (one per KEK wrapping the
// column key), so each comparison is widened to all of them:
//   col = v   -> col IN (v1, v2, …)          col <> v -> col NOT IN (…)
//   col IN (a, b)                 -> col IN (a1, a2, …, b1, b2, …)
//   col IS NOT DISTINCT FROM v    -> (col IS NOT DISTINCT FROM v1 OR … )   (NULL semantics kept)
//   col = ANY($n)                 -> unchanged text; the array is expanded at Bind
// With one form, only the value is replaced. Extended-protocol statements get
// as many forms per value as the key has wrappings at Parse, as NEW parameters
// after the client's, filled at every Bind; a statement bound after its key
// gained a wrapping is widened first (session-bind.ts). Every byte outside the
// edited ranges is kept.
import type { ColumnTarget, PredicateSite, RewritePlan } from '../sql/types.js';
import { RewriteError, valuesOf, type SiteShape, type StatementShape, type ValueSpot } from './searchable-sql.js';

export interface Edit {
  start: number;
  end: number;
  /** The replacement: text, or bytes already encoded (a candidate literal, spliced as is). */
  text: string | Buffer;
}

/** A value's quoted candidate, as text or as its (ASCII) bytes. */
export type Candidate = string | Buffer;
const asText = (c: Candidate): string => (typeof c === 'string' ? c : c.toString('latin1'));

/** Bind fills one value's candidate slots: of client parameter `src`, or of a literal of the statement. */
export interface ScalarFill {
  src?: number;
  /** A literal compared in a prepared statement (its plaintext, never logged). */
  value?: Buffer;
  /** Parameter numbers that receive the candidates (the first may be `src` itself). */
  targets: number[];
  column: ColumnTarget;
}

/** Bind replaces the array in client parameter `src` by all its elements' candidates, into `target`. */
export interface ArrayFill {
  src: number;
  target: number;
  column: ColumnTarget;
}

export interface ParseRewrite {
  edits: Edit[];
  /** Parameters the client binds (the server's statement has `total`). */
  clientCount: number;
  total: number;
  /** The Parse's parameter types for all `total` parameters (0 = inferred). */
  paramTypes: number[];
  /** For each added parameter (index total - clientCount), the client parameter whose format it takes, 0 = text. */
  formatFrom: number[];
  scalars: ScalarFill[];
  arrays: ArrayFill[];
  /** The rewritten text, kept once built when the statement has no literal to encrypt (then it never changes). */
  text?: string;
  /** Its Parse frame for the statement name last asked (the same bytes for every session: never mutated). */
  encoded?: { name: string; frame: Buffer };
}

/** Postgres' limit on parameters per statement. */
const MAX_PARAMS = 65535;

function exprWith(bytes: Buffer, v: ValueSpot, text: string): string {
  return bytes.toString('utf8', v.expr.start, v.token.start) + text + bytes.toString('utf8', v.token.end, v.expr.end);
}

/** The edits that widen one site, given the texts standing for each of its values (several = widen). */
function siteEdits(bytes: Buffer, shape: SiteShape, texts: (v: ValueSpot) => string[]): Edit[] {
  if (shape.form === 'array') {
    const t = texts(shape.value);
    if (t.length !== 1) throw new RewriteError('an array parameter takes one replacement');
    return [{ ...shape.value.token, text: t[0]! }];
  }
  if (shape.form === 'list') {
    return shape.values.map((v) => {
      const t = texts(v);
      return t.length === 1 ? { ...v.token, text: t[0]! } : { ...v.expr, text: t.map((x) => exprWith(bytes, v, x)).join(', ') };
    });
  }
  const v = shape.value;
  const t = texts(v);
  if (t.length === 1) return [{ ...v.token, text: t[0]! }];
  const each = t.map((x) => exprWith(bytes, v, x));
  const col = bytes.toString('utf8', shape.column.start, shape.column.end);
  switch (shape.op) {
    case 'eq':
    case 'neq': {
      const list = `${shape.op === 'neq' ? 'NOT IN' : 'IN'} (${each.join(', ')})`;
      return shape.valueFirst
        ? [{ start: v.expr.start, end: shape.column.end, text: `${col} ${list}` }]
        : [{ start: shape.operator.start, end: v.expr.end, text: list }];
    }
    case 'not_distinct':
    case 'distinct': {
      const [op, join] = shape.op === 'distinct' ? ['IS DISTINCT FROM', ' AND '] : ['IS NOT DISTINCT FROM', ' OR '];
      const start = Math.min(shape.column.start, v.expr.start);
      const end = Math.max(shape.column.end, v.expr.end);
      return [{ start, end, text: `(${each.map((e) => `${col} ${op} ${e}`).join(join)})` }];
    }
  }
}

/**
 * Edits for the literals compared in a simple-protocol statement. `texts` gives
 * each literal's quoted candidates; only a site with several needs the
 * statement's shape (a scan), so the common case splices the literal alone.
 */
export function literalEdits(
  bytes: Buffer,
  sites: readonly PredicateSite[],
  texts: (site: PredicateSite, literal: string) => Candidate[],
  shape: () => StatementShape,
): Edit[] {
  const edits: Edit[] = [];
  sites.forEach((site, i) => {
    if (site.params.length > 0) throw new RewriteError('a parameter compared with a searchable column outside a prepared statement');
    // One literal with one stored form (no rotation in progress): the literal alone is replaced.
    if (site.literals.length === 1) {
      const l = site.literals[0]!;
      const t = texts(site, l.value);
      if (t.length === 1) {
        edits.push({ start: l.start, end: l.end, text: t[0]! });
        return;
      }
    }
    const values = valuesOf(site);
    const byStart = new Map(values.map((v) => [v.token.start, texts(site, v.literal!)]));
    const pick = (v: ValueSpot) => byStart.get(v.token.start)!;
    if (values.every((v) => pick(v).length === 1)) {
      for (const v of values) edits.push({ ...v.token, text: pick(v)[0]! });
      return;
    }
    edits.push(...siteEdits(bytes, shape().sites[i]!.shape, (v) => pick(v).map(asText)));
  });
  return edits;
}

/**
 * The Parse-time rewrite of a statement with comparisons on searchable columns:
 * new parameters for every compared value (`slots` per scalar, one per array
 * that cannot be replaced in place), and what each Bind must put in them.
 * `$n` is reused as the first slot only when every use of it is a comparison
 * with the same key (binding candidate 1 into it then changes nothing else).
 */
export function planParse(
  bytes: Buffer,
  plan: RewritePlan,
  shape: StatementShape,
  clientTypes: readonly number[],
  slots: number,
  keyName: (t: ColumnTarget) => string,
): ParseRewrite {
  const clientCount = Math.max(clientTypes.length, shape.maxParam);
  const uses = new Map<number, { count: number; ids: Set<string> }>();
  for (const { site, shape: s } of shape.sites) {
    for (const p of site.params) {
      const u = uses.get(p.param) ?? { count: 0, ids: new Set<string>() };
      u.count++;
      u.ids.add(`${keyName(site.target)}\0${s.form === 'array' ? 'array' : 'scalar'}`);
      uses.set(p.param, u);
    }
  }
  const reusable = (n: number) => {
    const u = uses.get(n)!;
    return u.ids.size === 1 && (shape.paramTokens.get(n)?.length ?? 0) === u.count && !plan.params.has(n);
  };
  const types = Array.from({ length: clientCount }, (_, i) => clientTypes[i] ?? 0);
  const formatFrom: number[] = [];
  let next = clientCount + 1;
  const add = (typeOf: number, formatOf: number): number => {
    types.push(typeOf);
    formatFrom.push(formatOf);
    if (next > MAX_PARAMS) throw new RewriteError(`the rewritten statement would need more than ${MAX_PARAMS} parameters`);
    return next++;
  };
  const scalars = new Map<string, ScalarFill>();
  const arrays = new Map<string, ArrayFill>();
  const literalFills: ScalarFill[] = [];
  const edits: Edit[] = [];
  for (const { site, shape: s } of shape.sites) {
    const key = keyName(site.target);
    const texts = (v: ValueSpot): string[] => {
      if (v.param === undefined) {
        const targets = Array.from({ length: slots }, () => add(0, 0));
        literalFills.push({ value: Buffer.from(v.literal!, 'utf8'), targets, column: site.target });
        return targets.map((t) => `$${t}`);
      }
      const n = v.param;
      const type = clientTypes[n - 1] ?? 0;
      if (s.form === 'array') {
        const id = `${n}\0${key}`;
        let f = arrays.get(id);
        if (!f) arrays.set(id, (f = { src: n, target: reusable(n) ? n : add(type, n), column: site.target }));
        return [`$${f.target}`];
      }
      const id = `${n}\0${key}`;
      let f = scalars.get(id);
      if (!f) {
        const reuse = reusable(n);
        const targets = reuse ? [n] : [];
        while (targets.length < slots) targets.push(add(type, n));
        scalars.set(id, (f = { src: n, targets, column: site.target }));
      }
      return f.targets.map((t) => `$${t}`);
    };
    edits.push(...siteEdits(bytes, s, texts));
  }
  return {
    edits,
    clientCount,
    total: next - 1,
    paramTypes: types,
    formatFrom,
    scalars: [...scalars.values(), ...literalFills],
    arrays: [...arrays.values()],
  };
}
