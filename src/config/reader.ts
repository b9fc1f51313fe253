// Walks a parsed YAML document against the spec in schema.ts. It never stops at
// the first problem: each one is recorded with its key path and line, and the
// offending value is left out so the defaults fill in.
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node, type Pair } from 'yaml';
import type { ConfigProblem } from './errors.js';
import { joinPath, type Spec } from './schema.js';
import { suggest } from './suggest.js';

export interface ReadContext {
  source: string;
  doc: Document;
  lines: LineCounter;
  problems: ConfigProblem[];
  /** Line of each key path seen in the file (for problems found later, across keys). */
  lineOf: Map<string, number>;
  /** Reads the `encrypted` section (encrypted.ts); injected to keep this module generic. */
  readEncrypted(node: Node, path: string, ctx: ReadContext): unknown;
}

export function lineAt(ctx: ReadContext, node: unknown): number | undefined {
  const range = (node as Node | null | undefined)?.range;
  return range ? ctx.lines.linePos(range[0]).line : undefined;
}

export function problem(ctx: ReadContext, path: string, message: string, line?: number): void {
  ctx.problems.push({ where: line ? `${ctx.source}:${line}` : ctx.source, line, path, message });
}

function resolve(ctx: ReadContext, node: unknown): Node | null {
  if (isAlias(node)) return (node.resolve(ctx.doc) as Node | undefined) ?? null;
  return (node as Node | null) ?? null;
}

/** Whether a node is absent: a missing value or an explicit YAML null (`key:`). */
export function isNull(node: Node | null): boolean {
  return node === null || (isScalar(node) && node.value === null);
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

function describe(node: Node): string {
  if (isMap(node)) return 'a map';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) return show(node.value);
  return 'something else';
}

/** A scalar string, or a problem naming what was found instead. */
export function readString(ctx: ReadContext, node: Node, path: string, line?: number, secret = false): string | undefined {
  if (isScalar(node) && typeof node.value === 'string') {
    if (node.value === '') return void problem(ctx, path, 'must not be empty', line);
    return node.value;
  }
  if (isScalar(node) && (typeof node.value === 'number' || typeof node.value === 'boolean')) {
    if (secret) return void problem(ctx, path, `expected a string, got a ${typeof node.value} (quote it)`, line);
    return void problem(ctx, path, `expected a string, got ${show(node.value)} (quote it: "${String(node.value)}")`, line);
  }
  return void problem(ctx, path, `expected a string, got ${describe(node)}`, line);
}

function readScalar(ctx: ReadContext, node: Node, spec: Spec, path: string, line?: number): unknown {
  const v = isScalar(node) ? node.value : undefined;
  switch (spec.kind) {
    case 'string':
      return readString(ctx, node, path, line, spec.secret);
    case 'int':
      if (typeof v === 'number' && Number.isInteger(v) && v >= spec.min && v <= spec.max) return v;
      return void problem(ctx, path, `expected an integer ${range(spec.min, spec.max)}, got ${describe(node)}`, line);
    case 'number':
      if (typeof v === 'number' && Number.isFinite(v) && v >= spec.min) return v;
      return void problem(ctx, path, `expected a number >= ${spec.min}, got ${describe(node)}`, line);
    case 'bool':
      if (typeof v === 'boolean') return v;
      return void problem(ctx, path, `expected true or false, got ${describe(node)}`, line);
    case 'enum':
      if (typeof v === 'string' && spec.values.includes(v)) return v;
      return void problem(ctx, path, `expected one of ${spec.values.join(', ')}, got ${describe(node)}`, line);
    default:
      throw new Error(`not a scalar spec: ${spec.kind}`);
  }
}

function range(min: number, max: number): string {
  return max >= Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
}

/**
 * Reads `node` as `spec`. Returns undefined for null (absent) or invalid values;
 * `line` is where the value is (the key's line when the value spans lines).
 */
export function readNode(ctx: ReadContext, rawNode: unknown, spec: Spec, path: string, line?: number): unknown {
  const node = resolve(ctx, rawNode);
  if (node === null || isNull(node)) return undefined;
  line ??= lineAt(ctx, node);
  if (isScalar(node) && (spec.kind === 'map' || spec.kind === 'strings' || spec.kind === 'encrypted')) {
    return void problem(ctx, path, `expected ${spec.kind === 'strings' ? 'a list of strings' : 'a map'}, got ${describe(node)}`, line);
  }
  switch (spec.kind) {
    case 'map':
      return readMap(ctx, node, spec.fields, path, line);
    case 'strings':
      return readStrings(ctx, node, path, line);
    case 'encrypted':
      return ctx.readEncrypted(node, path, ctx);
    default:
      return readScalar(ctx, node, spec, path, isScalar(node) ? (lineAt(ctx, node) ?? line) : line);
  }
}

function readStrings(ctx: ReadContext, node: Node, path: string, line?: number): string[] | undefined {
  if (!isSeq(node)) return void problem(ctx, path, `expected a list of strings, got ${describe(node)}`, line);
  const out: string[] = [];
  node.items.forEach((item, i) => {
    const n = resolve(ctx, item);
    const s = n === null ? undefined : readString(ctx, n, `${path}[${i}]`, lineAt(ctx, n) ?? line);
    if (s !== undefined) out.push(s);
  });
  return out;
}

/** Reads a map's pairs against `fields`, rejecting unknown keys with a suggestion. */
export function readMap(
  ctx: ReadContext,
  node: Node,
  fields: Readonly<Record<string, Spec>>,
  path: string,
  line?: number,
): Record<string, unknown> | undefined {
  if (!isMap(node)) return void problem(ctx, path, `expected a map, got ${describe(node)}`, line);
  const out: Record<string, unknown> = {};
  const invalid = new Set<string>();
  const seen = new Map<string, number | undefined>();
  for (const pair of node.items as Pair<unknown, unknown>[]) {
    const keyLine = lineAt(ctx, pair.key) ?? line;
    const key = resolve(ctx, pair.key);
    if (!isScalar(key) || typeof key.value !== 'string') {
      problem(ctx, path, `keys must be strings, got ${key ? describe(key) : 'an empty key'}`, keyLine);
      continue;
    }
    const name = key.value;
    const childPath = joinPath(path, name);
    if (seen.has(name)) {
      const first = seen.get(name);
      problem(ctx, childPath, `duplicate key${first ? ` (first on line ${first})` : ''}`, keyLine);
      continue;
    }
    seen.set(name, keyLine);
    const spec = Object.hasOwn(fields, name) ? fields[name] : undefined;
    if (!spec) {
      const hint = suggest(name, Object.keys(fields));
      const tail = hint ? `did you mean "${hint}"?` : `expected one of: ${Object.keys(fields).join(', ')}`;
      problem(ctx, childPath, `unknown key (${tail})`, keyLine);
      continue;
    }
    if (keyLine) ctx.lineOf.set(childPath, keyLine);
    const before = ctx.problems.length;
    const value = readNode(ctx, pair.value, spec, childPath, keyLine);
    if (value !== undefined) out[name] = value;
    else if (ctx.problems.length > before) invalid.add(name);
  }
  for (const [name, spec] of Object.entries(fields)) {
    if (spec.required && out[name] === undefined && !invalid.has(name)) {
      problem(ctx, joinPath(path, name), `required when ${path || 'the file'} is set`, line);
    }
  }
  return out;
}
