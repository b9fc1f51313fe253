// Plans reused across statement texts of one shape (shape.ts): a text that
// differs from an analysed one only in literal values and comments gets that
// analysis' plan, rebased onto its own byte offsets and values, instead of a
// parse. This is exact, not heuristic:
//  - The parse tree is instrumented: every constant's value reports when the
//    analysis reads it. A masked constant the analysis never read cannot have
//    influenced the plan, so any value will do. One it read is "fixed": a text
//    reuses the plan only when that constant is byte-identical.
//  - A constant the plan carries (a literal written to or compared with an
//    encrypted column) takes the new text's value. The analysis decides only on
//    such a value's emptiness, and the shape keeps empty strings unmasked.
//  - A masked token without a constant node at its offset (COPY options, DO
//    bodies, `float(10)`, the 5 of `-5`, …) is fixed as well.
//  - A template is kept only if rebasing it onto its own text reproduces the
//    plan exactly: offsets, values, and every field (an unknown field fails it).
import { ClockCache } from '../cache/clock-cache.js';
import type { Dependency } from './analyze.js';
import { segmentValue, type MaskedText, type Segment } from './shape.js';
import type { ByteRange, ExecuteArg, LiteralSite, ParamSite, PredicateSite, RewritePlan, SqlPlan, StatementInfo } from './types.js';

const VALUE_FIELDS = ['sval', 'ival', 'fval'] as const;

/** Which constants of one parse tree exist and which the analysis read, by byte offset. */
export class ConstReads {
  readonly present = new Set<number>();
  readonly read = new Set<number>();
  parsed = false;

  /** Wraps a parser: the tree it returns reports reads of its constants here. */
  instrument(tree: unknown): unknown {
    const stack: unknown[] = [tree];
    while (stack.length > 0) {
      const node = stack.pop();
      if (node === null || typeof node !== 'object') continue;
      if (Array.isArray(node)) {
        for (const n of node) if (n !== null && typeof n === 'object') stack.push(n);
        continue;
      }
      const obj = node as Record<string, unknown>;
      const k = obj.A_Const as Record<string, unknown> | undefined;
      if (k !== undefined && k !== null && typeof k === 'object') {
        this.watch(k);
        continue;
      }
      for (const key in obj) {
        const v = obj[key];
        if (v !== null && typeof v === 'object') stack.push(v);
      }
    }
    this.parsed = true;
    return tree;
  }

  private watch(k: Record<string, unknown>): void {
    // libpg_query leaves zero fields out of its JSON: a missing location is 0.
    const location = typeof k.location === 'number' ? k.location : 0;
    if (location < 0) return;
    this.present.add(location);
    const read = this.read;
    for (const f of VALUE_FIELDS) {
      const inner = k[f] as Record<string, unknown> | undefined;
      if (inner === null || typeof inner !== 'object') continue;
      // Defined even where libpg_query left the field out (a zero), so any access is seen.
      let value = inner[f];
      Object.defineProperty(inner, f, {
        enumerable: true,
        configurable: true,
        get() {
          read.add(location);
          return value;
        },
        set(v: unknown) {
          read.add(location);
          value = v;
        },
      });
    }
  }
}

export interface Template {
  plan: SqlPlan;
  deps: Dependency[];
  segments: Segment[];
  /** Segments that must be byte-identical (their value may have shaped the plan), as latin1. */
  fixed: { index: number; text: string }[];
  /** Segment index of each carried value, by its start offset in the analysed text. */
  carried: Map<number, number>;
  /** Texts planned from this template, and text-cache hits on those texts (SqlAnalyzer's admission). */
  derived: number;
  reused: number;
}

/** Index of the segment starting at `at`, or -1. */
function segmentAt(segments: readonly Segment[], at: number): number {
  let lo = 0;
  let hi = segments.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = segments[mid]!.start;
    if (s === at) return mid;
    if (s < at) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** Byte ranges of the values a plan carries (they take the new text's values). */
function carriedRanges(plan: RewritePlan): (ByteRange & { value: string })[] {
  const out: (ByteRange & { value: string })[] = [...plan.literals];
  for (const p of plan.predicates) out.push(...p.literals);
  for (const s of plan.statements) for (const a of s.execute?.args ?? []) if (a.kind === 'literal') out.push({ ...a.range, value: a.value });
  return out;
}

/**
 * The template of an analysis, or undefined when it cannot be reused: the text
 * was not parsed (syntax error), the plan is a refusal, a carried value is not
 * exactly one string segment, or the self-check fails.
 */
export function buildTemplate(plan: SqlPlan, deps: Dependency[], masked: MaskedText, bytes: Buffer, reads: ConstReads): Template | undefined {
  if (!reads.parsed || (plan.kind !== 'plan' && plan.kind !== 'passthrough')) return undefined;
  const { segments } = masked;
  const carried = new Map<number, number>();
  if (plan.kind === 'plan') {
    for (const r of carriedRanges(plan)) {
      const i = segmentAt(segments, r.start);
      const seg = segments[i];
      if (!seg || seg.end !== r.end || !(seg.kind === 's' || seg.kind === 'e' || seg.kind === 'd')) return undefined;
      // The lexer's decoding must agree with the parser's (checked on every template).
      if (segmentValue(bytes, masked, seg) !== r.value) return undefined;
      carried.set(r.start, i);
    }
  }
  const fixed: Template['fixed'] = [];
  segments.forEach((seg, index) => {
    if (seg.kind === 'c' || carried.has(seg.start)) return;
    if (reads.present.has(seg.start) && !reads.read.has(seg.start)) return;
    fixed.push({ index, text: masked.source.slice(seg.start, seg.end) });
  });
  const t: Template = { plan, deps, segments, fixed, carried, derived: 0, reused: 0 };
  return plan.kind === 'passthrough' || sameValue(rebase(t, bytes, masked), plan) ? t : undefined;
}

/** Does the template apply to this text (its fixed segments are identical)? */
export function matches(t: Template, masked: MaskedText): boolean {
  for (const f of t.fixed) {
    const s = masked.segments[f.index]!;
    if (s.end - s.start !== f.text.length || !masked.source.startsWith(f.text, s.start)) return false;
  }
  return true;
}

/**
 * The template's plan for a text of its shape (call `matches` first). Undefined
 * when a carried value cannot be decoded with certainty or an offset falls
 * inside a segment: then analyse the text in full.
 */
export function rebase(t: Template, bytes: Buffer, masked: MaskedText): SqlPlan | undefined {
  const plan = t.plan;
  if (plan.kind !== 'plan') return plan;
  const from = t.segments;
  const segments = masked.segments;
  /** An offset outside every segment keeps its distance to the end of the segment before it. */
  const at = (o: number): number => {
    let lo = 0;
    let hi = from.length - 1;
    let k = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (from[mid]!.start < o) {
        k = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (k < 0) return o;
    if (from[k]!.end > o) throw new RangeError('offset inside a masked segment');
    return o - from[k]!.end + segments[k]!.end;
  };
  const range = (r: ByteRange): ByteRange => ({ start: at(r.start), end: at(r.end) });
  const value = (start: number): { start: number; end: number; value: string } => {
    const seg = segments[t.carried.get(start)!]!;
    const v = segmentValue(bytes, masked, seg);
    if (v === undefined) throw new RangeError('a value the lexer cannot decode');
    return { start: seg.start, end: seg.end, value: v };
  };
  const paramSite = (p: ParamSite): ParamSite => ({ param: p.param, target: p.target, elements: p.elements, ranges: p.ranges.map(range) });
  try {
    const literals = plan.literals.map((l): LiteralSite => {
      const v = value(l.start);
      return { start: v.start, end: v.end, value: v.value, target: l.target };
    });
    const params = new Map<number, ParamSite>();
    for (const [n, p] of plan.params) params.set(n, paramSite(p));
    const predicates = plan.predicates.map(
      (p): PredicateSite => ({
        kind: p.kind,
        negated: p.negated,
        target: p.target,
        params: p.params.map((x) => ({ param: x.param, ...range(x) })),
        literals: p.literals.map((x) => value(x.start)),
        location: at(p.location),
      }),
    );
    const statements = plan.statements.map((s): StatementInfo => {
      const out: StatementInfo = { index: s.index, type: s.type, range: range(s.range), isDdl: s.isDdl };
      if (s.prepare) out.prepare = { name: s.prepare.name, params: s.prepare.params.map(paramSite) };
      if (s.execute) out.execute = { name: s.execute.name, args: s.execute.args.map((a) => executeArg(a, range, at, value)) };
      if (s.deallocate) out.deallocate = { name: s.deallocate.name };
      return out;
    });
    const out: RewritePlan = {
      kind: 'plan',
      params,
      literals,
      predicates,
      copies: plan.copies,
      statements,
      tablesTouched: plan.tablesTouched,
      isDdl: plan.isDdl,
    };
    return out;
  } catch (e) {
    if (e instanceof RangeError) return undefined;
    throw e;
  }
}

function executeArg(
  a: ExecuteArg,
  range: (r: ByteRange) => ByteRange,
  at: (o: number) => number,
  value: (start: number) => { start: number; end: number; value: string },
): ExecuteArg {
  switch (a.kind) {
    case 'literal': {
      const v = value(a.range.start);
      return { index: a.index, kind: 'literal', value: v.value, range: { start: v.start, end: v.end } };
    }
    case 'param':
      return { index: a.index, kind: 'param', param: a.param, range: range(a.range) };
    case 'null':
      return { index: a.index, kind: 'null' };
    case 'other':
      return { index: a.index, kind: 'other', description: a.description, location: at(a.location) };
  }
}

/** Deep equality over plans: primitives, arrays, Maps and plain objects (same own keys). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  if (a instanceof Map) {
    if (!(b instanceof Map) || a.size !== b.size) return false;
    for (const [k, v] of a) if (!b.has(k) || !sameValue(v, b.get(k))) return false;
    return true;
  }
  if (Array.isArray(b) || b instanceof Map) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** Rough bytes a template holds per segment: the segment, and the plan's site objects for it. */
const BYTES_PER_SEGMENT = 128;

/**
 * Templates by shape key: a bounded cache (CLOCK, near-LRU: entries, and an
 * estimate of the bytes of keys and plans), a few templates per key (their fixed values differ). A
 * shape gets a template on its second analysis: building one costs about a
 * third of an analysis, wasted on shapes that never recur.
 */
export class ShapeCache {
  /** Hits mark entries, never move them (clock-cache.ts says why). */
  private readonly map: ClockCache<string, { templates: Template[]; bytes: number }>;
  /** Keys analysed once, without a template yet (bounded like the templates, keys only). */
  private readonly once: ClockCache<string, true>;

  constructor(
    private readonly maxEntries: number,
    private readonly maxBytes: number,
    private readonly perKey = 4,
  ) {
    this.map = new ClockCache({ maxEntries, maxWeight: maxBytes, weigh: (_k, e) => e.bytes });
    this.once = new ClockCache({ maxEntries, maxWeight: maxBytes / 4, weigh: (k) => k.length });
  }

  get enabled(): boolean {
    return this.maxEntries > 0;
  }

  get entries(): number {
    return this.map.size;
  }

  /** Should this analysis of `key` build a template? True from the second time a shape is analysed. */
  recurring(key: string): boolean {
    if (this.map.has(key)) return true;
    if (this.once.delete(key)) return true;
    if (key.length > this.maxBytes / 4) return false;
    this.once.set(key, true);
    return false;
  }

  get(key: string): Template[] | undefined {
    return this.map.get(key)?.templates;
  }

  add(key: string, t: Template): void {
    const cost = key.length + BYTES_PER_SEGMENT * t.segments.length;
    if (!this.enabled || cost > this.maxBytes) return;
    const e = this.map.peek(key) ?? { templates: [], bytes: 0 };
    e.templates.unshift(t);
    if (e.templates.length > this.perKey) e.templates.pop();
    e.bytes = cost * e.templates.length;
    this.map.set(key, e); // (re)weighs it and evicts what the bounds require
  }

  /** Forget one template (its catalog dependencies changed). */
  drop(key: string, t: Template): void {
    const e = this.map.peek(key);
    if (!e) return;
    const i = e.templates.indexOf(t);
    if (i < 0) return;
    e.templates.splice(i, 1);
    if (e.templates.length === 0) {
      this.map.delete(key);
      return;
    }
    e.bytes = (e.bytes / (e.templates.length + 1)) * e.templates.length;
    this.map.set(key, e);
  }

  clear(): void {
    this.map.clear();
    this.once.clear();
  }
}
