// The write path for the extended protocol: encrypt the Bind parameters the SQL
// analysis says land in configured columns (text or binary format; array
// parameters element by element). Other parameters keep their bytes.
import { decodeBind, encodeBind, formatAt } from '../protocol/frontend/bind.js';
import type { ColumnTarget, ParamSite } from '../sql/types.js';
import type { MaybePromise, ValueCodec, ValueShape } from './values.js';

export class ParamError extends Error {
  constructor(
    readonly target: ColumnTarget,
    message: string,
  ) {
    super(message);
  }
}

/** Returns the new Bind frame, or undefined when nothing changed. */
export function encryptBind(
  frame: Buffer,
  sites: ReadonlyMap<number, ParamSite>,
  shapeOf: (t: ColumnTarget) => ValueShape,
  codec: ValueCodec,
): MaybePromise<Buffer | undefined> {
  const bind = decodeBind(frame);
  let changed = false;
  let pending: Promise<unknown>[] | undefined;
  for (const [n, site] of sites) {
    const i = n - 1;
    const v = bind.values[i];
    if (v === undefined || v === null) continue;
    const binary = formatAt(bind.paramFormats, i) === 1;
    const shape = shapeOf(site.target);
    const r = site.elements
      ? encryptArray(v, binary, (e) => codec.encrypt(e, site.target.policy, shape, binary), site.target)
      : codec.encrypt(v, site.target.policy, shape, binary);
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

type Enc = (element: Buffer) => MaybePromise<Buffer>;

function encryptArray(v: Buffer, binary: boolean, enc: Enc, target: ColumnTarget): MaybePromise<Buffer> {
  return binary ? encryptBinaryArray(v, enc, target) : encryptTextArray(v, enc, target);
}

function all(items: MaybePromise<Buffer | null>[], done: (vals: (Buffer | null)[]) => Buffer): MaybePromise<Buffer> {
  if (items.some((x) => x instanceof Promise)) return Promise.all(items).then(done);
  return done(items as (Buffer | null)[]);
}

/** A one-dimensional array literal `{a,"b c",NULL}`; every element re-emitted quoted. */
function encryptTextArray(v: Buffer, enc: Enc, target: ColumnTarget): MaybePromise<Buffer> {
  const s = v.toString('utf8').trim();
  const bad = () => new ParamError(target, `pgcmek: array parameter for ${target.schema}.${target.table}.${target.column} is not a one-dimensional array literal`);
  if (!s.startsWith('{') || !s.endsWith('}')) throw bad();
  const items: MaybePromise<Buffer | null>[] = [];
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
      if (s[i] !== '"') throw bad();
      i++;
      el = out;
    } else {
      let j = i;
      while (j < end && s[j] !== ',') j++;
      const raw = s.slice(i, j).trim();
      if (raw.includes('{') || raw.includes('"')) throw bad();
      el = raw.toUpperCase() === 'NULL' ? null : raw.replace(/\\(.)/g, '$1');
      i = j;
    }
    while (s[i] === ' ') i++;
    if (i < end && s[i] !== ',') throw bad();
    i++;
    items.push(el === null ? null : enc(Buffer.from(el, 'utf8')));
  }
  return all(items, (vals) => {
    const parts = vals.map((b) => (b === null ? 'NULL' : '"' + b.toString('utf8').replace(/[\\"]/g, (c) => '\\' + c) + '"'));
    return Buffer.from('{' + parts.join(',') + '}', 'utf8');
  });
}

/** Binary array: ndim, hasnull, elemtype, (size, lbound)*ndim, then (len|-1, bytes)*. */
function encryptBinaryArray(v: Buffer, enc: Enc, target: ColumnTarget): MaybePromise<Buffer> {
  if (v.length < 12) throw new ParamError(target, `pgcmek: malformed binary array parameter for ${target.schema}.${target.table}.${target.column}`);
  const ndim = v.readInt32BE(0);
  let at = 12;
  let n = ndim === 0 ? 0 : 1;
  for (let d = 0; d < ndim; d++) {
    n *= v.readInt32BE(at);
    at += 8;
  }
  const head = v.subarray(0, at);
  const items: MaybePromise<Buffer | null>[] = [];
  for (let k = 0; k < n; k++) {
    const len = v.readInt32BE(at);
    at += 4;
    if (len < 0) {
      items.push(null);
      continue;
    }
    items.push(enc(v.subarray(at, at + len)));
    at += len;
  }
  return all(items, (vals) => {
    const chunks: Buffer[] = [head];
    for (const b of vals) {
      const l = Buffer.allocUnsafe(4);
      l.writeInt32BE(b === null ? -1 : b.length);
      chunks.push(l);
      if (b) chunks.push(b);
    }
    return Buffer.concat(chunks);
  });
}
