// The write path for the extended protocol: encrypt the Bind parameters the SQL
// analysis says land in configured columns (text or binary format; array
// parameters element by element), deterministically for searchable columns.
// For a statement rewritten at Parse (searchable-rewrite.ts), also fill the
// parameters the proxy added with the candidates of the compared values, and
// expand compared arrays. Other parameters keep their bytes.
import { decodeBind, encodeBind, formatAt, locateBindValues } from '../protocol/frontend/bind.js';
import type { SearchableColumnKey } from '../searchable/column-key.js';
import type { ColumnTarget, ParamSite } from '../sql/types.js';
import { fillSearchableBind } from './searchable-bind.js';
import type { ParseRewrite } from './searchable-rewrite.js';
import { spliceValues, type ValueEdit } from './splice.js';
import { ValueFormatError, type MaybePromise, type ValueCodec, type ValueShape } from './values.js';

export class ParamError extends Error {
  constructor(
    readonly target: ColumnTarget,
    message: string,
  ) {
    super(message);
  }
}

/** The Bind does not carry the statement's parameter count (Postgres' own check, told in the client's numbers). */
export class BindCountError extends Error {}

/** What a Bind of one statement needs. */
export interface BindPlan {
  /** Parameters written to encrypted columns. */
  writes: ReadonlyMap<number, ParamSite>;
  /** The statement was rewritten for searchable comparisons. */
  rewrite?: ParseRewrite;
}

export interface BindContext {
  shapeOf(t: ColumnTarget): ValueShape;
  codec: ValueCodec;
  /** A searchable column's key; throws when it is not loaded. */
  key(t: ColumnTarget): SearchableColumnKey;
}

/** Returns the new Bind frame, or undefined when nothing changed. */
export function encryptBind(frame: Buffer, plan: BindPlan, c: BindContext, statement: string): MaybePromise<Buffer | undefined> {
  if (plan.rewrite) {
    // Most rewritten Binds (text parameters, nothing else encrypted) are built in one pass.
    const fast = fillSearchableBind(frame, plan.rewrite, plan.writes, (t) => c.key(t));
    return fast ?? rewriteBind(frame, plan, plan.rewrite, c, statement);
  }
  const at = locateBindValues(frame);
  // Not a well-formed Bind: the full decoder says what is wrong with it.
  if (at === undefined) return rewriteBind(frame, plan, undefined, c, statement);
  // The common case, only written values encrypted: the other bytes of the frame are copied as they are.
  let edits: { from: number; to: number; value: MaybePromise<Buffer> }[] | undefined;
  let pending = false;
  let p = at.values;
  for (let i = 0; i < at.count; i++) {
    const len = frame.readInt32BE(p);
    const start = p + 4;
    const end = len > 0 ? start + len : start;
    const site = len < 0 ? undefined : plan.writes.get(i + 1);
    if (site) {
      const v = frame.subarray(start, end);
      const nf = at.formatCount;
      // Postgres' 0/1/n rule, as formatAt.
      const format = nf === 0 || (nf > 1 && i >= nf) ? 0 : frame.readInt16BE(at.formats + 2 * (nf === 1 ? 0 : i));
      const r = encryptValue(v, site, format === 1, c);
      if (r !== v) {
        (edits ??= []).push({ from: p, to: end, value: r });
        if (r instanceof Promise) pending = true;
      }
    }
    p = end;
  }
  if (!edits) return undefined;
  if (!pending) return spliceValues(frame, edits as ValueEdit[]);
  const all = edits;
  return Promise.all(all.map((e) => e.value)).then((vals) => spliceValues(frame, all.map((e, k) => ({ from: e.from, to: e.to, value: vals[k]! }))));
}

/** The decode/encode path: statements rewritten for searchable comparisons (parameters added). */
function rewriteBind(frame: Buffer, plan: BindPlan, rw: ParseRewrite | undefined, c: BindContext, statement: string): MaybePromise<Buffer | undefined> {
  const bind = decodeBind(frame);
  const client = bind.values;
  if (rw) {
    if (client.length !== rw.clientCount) {
      throw new BindCountError(`bind message supplies ${client.length} parameters, but prepared statement "${statement}" requires ${rw.clientCount}`);
    }
    bind.values = [...client, ...new Array<Buffer | null>(rw.total - rw.clientCount).fill(null)];
    bind.paramFormats = widenFormats(bind.paramFormats, rw);
    fillCandidates(bind.values, client, bind.paramFormats, rw, c);
  }
  let changed = rw !== undefined;
  let pending: Promise<unknown>[] | undefined;
  for (const [n, site] of plan.writes) {
    const i = n - 1;
    const v = client[i];
    if (v === undefined || v === null) continue;
    const binary = formatAt(bind.paramFormats, i) === 1;
    const r = encryptValue(v, site, binary, c);
    if (r instanceof Promise) {
      (pending ??= []).push(
        r.then((b) => {
          bind.values[i] = b;
        }),
      );
      changed = true;
    } else if (r !== v) {
      bind.values[i] = r;
      changed = true;
    }
  }
  if (!changed) return undefined;
  if (pending) return Promise.all(pending).then(() => encodeBind(bind));
  return encodeBind(bind);
}

/** One parameter's new bytes; a value the column cannot hold becomes a ParamError naming the column. */
function encryptValue(v: Buffer, site: ParamSite, binary: boolean, c: BindContext): MaybePromise<Buffer> {
  try {
    const r = encryptSiteValue(v, site, binary, c);
    return r instanceof Promise ? r.catch((e: unknown) => Promise.reject(formatError(e, site.target))) : r;
  } catch (e) {
    throw formatError(e, site.target);
  }
}

/** A ValueFormatError (malformed JSON...) as the ParamError that names its column; anything else as it is. */
export function formatError(e: unknown, t: ColumnTarget): unknown {
  if (!(e instanceof ValueFormatError)) return e;
  return new ParamError(t, `pgcmek: invalid value for ${t.schema}.${t.table}.${t.column}: ${e.message}`);
}

function encryptSiteValue(v: Buffer, site: ParamSite, binary: boolean, c: BindContext): MaybePromise<Buffer> {
  const t = site.target;
  if (t.policy.searchable) {
    const key = c.key(t);
    const enc = (e: Buffer) => c.codec.encryptSearchable(e, key);
    return site.elements ? mapArray(v, binary, t, enc) : enc(v);
  }
  const shape = c.shapeOf(t);
  const enc = (e: Buffer) => c.codec.encrypt(e, t.policy, shape, binary);
  return site.elements ? mapArray(v, binary, t, enc) : enc(v);
}

/** Format codes for every parameter of the rewritten statement (added ones take their source's). */
function widenFormats(formats: number[], rw: ParseRewrite): number[] {
  const all: number[] = [];
  for (let i = 0; i < rw.clientCount; i++) all.push(formatAt(formats, i));
  for (const src of rw.formatFrom) all.push(src > 0 ? formatAt(formats, src - 1) : 0);
  if (all.every((f) => f === 0)) return [];
  return all;
}

function fillCandidates(values: (Buffer | null)[], client: readonly (Buffer | null)[], formats: number[], rw: ParseRewrite, c: BindContext): void {
  for (const f of rw.scalars) {
    const pt = f.src !== undefined ? client[f.src - 1]! : f.value!;
    if (pt === null) {
      // NULL compares as NULL in every slot (`col IN (NULL, …)` is never true, as `col = NULL`).
      for (const t of f.targets) values[t - 1] = null;
      continue;
    }
    const cands = c.key(f.column).slots(pt, f.targets.length);
    f.targets.forEach((t, i) => (values[t - 1] = cands[i]!));
  }
  for (const f of rw.arrays) {
    const v = client[f.src - 1]!;
    if (v === null) {
      values[f.target - 1] = null;
      continue;
    }
    const key = c.key(f.column);
    values[f.target - 1] = expandArray(v, formatAt(formats, f.src - 1) === 1, f.column, (e) => key.candidates(e));
  }
}

// ---- arrays ------------------------------------------------------------------

interface ParsedArray {
  /** Binary: the element type OID. */
  elemType?: number;
  items: (Buffer | null)[];
}

function bad(target: ColumnTarget, what: string): ParamError {
  return new ParamError(target, `pgcmek: array parameter for ${target.schema}.${target.table}.${target.column} is not ${what}`);
}

/** A one-dimensional array literal `{a,"b c",NULL}`. */
function parseTextArray(v: Buffer, target: ColumnTarget): ParsedArray {
  const s = v.toString('utf8').trim();
  if (!s.startsWith('{') || !s.endsWith('}')) throw bad(target, 'a one-dimensional array literal');
  const items: (Buffer | null)[] = [];
  let i = 1;
  const end = s.length - 1;
  while (i < end) {
    while (s[i] === ' ') i++;
    let el: string | null;
    if (s[i] === '"') {
      let out = '';
      i++;
      for (; i < end && s[i] !== '"'; i++) {
        if (s[i] === '\\') i++;
        out += s[i];
      }
      if (s[i] !== '"') throw bad(target, 'a one-dimensional array literal');
      i++;
      el = out;
    } else {
      let j = i;
      while (j < end && s[j] !== ',') j++;
      const raw = s.slice(i, j).trim();
      if (raw.includes('{') || raw.includes('"')) throw bad(target, 'a one-dimensional array literal');
      el = raw.toUpperCase() === 'NULL' ? null : raw.replace(/\\(.)/g, '$1');
      i = j;
    }
    while (s[i] === ' ') i++;
    if (i < end && s[i] !== ',') throw bad(target, 'a one-dimensional array literal');
    i++;
    items.push(el === null ? null : Buffer.from(el, 'utf8'));
  }
  return { items };
}

function textArray(vals: readonly (Buffer | null)[]): Buffer {
  const parts = vals.map((b) => (b === null ? 'NULL' : '"' + b.toString('utf8').replace(/[\\"]/g, (c) => '\\' + c) + '"'));
  return Buffer.from('{' + parts.join(',') + '}', 'utf8');
}

/** Binary array: ndim, hasnull, elemtype, (size, lbound)*ndim, then (len|-1, bytes)*. */
function parseBinaryArray(v: Buffer, target: ColumnTarget): ParsedArray & { head: Buffer } {
  if (v.length < 12) throw bad(target, 'a well-formed binary array');
  const ndim = v.readInt32BE(0);
  let at = 12;
  let n = ndim === 0 ? 0 : 1;
  for (let d = 0; d < ndim; d++) {
    n *= v.readInt32BE(at);
    at += 8;
  }
  const head = v.subarray(0, at);
  const items: (Buffer | null)[] = [];
  for (let k = 0; k < n; k++) {
    const len = v.readInt32BE(at);
    at += 4;
    if (len < 0) {
      items.push(null);
      continue;
    }
    items.push(v.subarray(at, at + len));
    at += len;
  }
  return { head, elemType: v.readUInt32BE(8), items };
}

function binaryItems(head: Buffer, vals: readonly (Buffer | null)[]): Buffer {
  const chunks: Buffer[] = [head];
  for (const b of vals) {
    const l = Buffer.allocUnsafe(4);
    l.writeInt32BE(b === null ? -1 : b.length);
    chunks.push(l);
    if (b) chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/** Every element through `fn`, one to one (the array keeps its shape). */
function mapArray(v: Buffer, binary: boolean, target: ColumnTarget, fn: (e: Buffer) => MaybePromise<Buffer>): MaybePromise<Buffer> {
  const parsed: ParsedArray & { head?: Buffer } = binary ? parseBinaryArray(v, target) : parseTextArray(v, target);
  const items = parsed.items.map((e) => (e === null ? null : fn(e)));
  const done = (vals: (Buffer | null)[]) => (parsed.head ? binaryItems(parsed.head, vals) : textArray(vals));
  if (items.some((x) => x instanceof Promise)) return Promise.all(items).then(done);
  return done(items as (Buffer | null)[]);
}

/** Every element replaced by all of `fn`'s results: a one-dimensional array of the same element type. */
function expandArray(v: Buffer, binary: boolean, target: ColumnTarget, fn: (e: Buffer) => Buffer[]): Buffer {
  const expand = (items: (Buffer | null)[]) => items.flatMap((e): (Buffer | null)[] => (e === null ? [null] : fn(e)));
  if (!binary) return textArray(expand(parseTextArray(v, target).items));
  const parsed = parseBinaryArray(v, target);
  if (parsed.head.readInt32BE(0) > 1) throw bad(target, 'one-dimensional');
  const vals = expand(parsed.items);
  if (vals.length === 0) return v;
  const head = Buffer.alloc(20);
  head.writeInt32BE(1, 0);
  head.writeInt32BE(vals.includes(null) ? 1 : 0, 4);
  head.writeUInt32BE(parsed.elemType!, 8);
  head.writeInt32BE(vals.length, 12);
  head.writeInt32BE(1, 16);
  return binaryItems(head, vals);
}
