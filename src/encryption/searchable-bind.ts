// The Bind of a statement rewritten at Parse for searchable comparisons
// (searchable-rewrite.ts), built in one pass over the client's frame: the
// portal and statement names, the client's values and the result formats are
// copied as bytes, and the candidates go straight into the new frame. The
// general path (params.ts) decodes the frame into objects and encodes them
// again, which in the running proxy cost about as much as the candidates'
// crypto. Byte for byte the frame the general path builds
// (test/searchable/searchable-bind.test.ts compares them); frames this path does
// not take (undefined) go to the general path, which also reports what is wrong.
import { locateBindValues } from '../protocol/frontend/bind.js';
import type { SearchableColumnKey } from '../searchable/column-key.js';
import type { ColumnTarget } from '../sql/types.js';
import type { ParseRewrite } from './searchable-rewrite.js';

/** Parameters a Bind may carry as the general path encodes them (int16). */
const MAX_BIND_PARAMS = 0x7fff;

/**
 * The rewritten Bind, or undefined when the general path must build it: the
 * statement also writes parameters to encrypted columns (`writes`), compares
 * an array parameter, or the client sends binary parameters, another parameter
 * count than the statement's, or a frame that is not well-formed. Throws what
 * `key()` and `slots()` throw (SearchableKeyError), as the general path does.
 */
export function fillSearchableBind(
  frame: Buffer,
  rw: ParseRewrite,
  writes: ReadonlyMap<number, unknown>,
  key: (t: ColumnTarget) => SearchableColumnKey,
): Buffer | undefined {
  if (writes.size > 0 || rw.arrays.length > 0 || rw.total > MAX_BIND_PARAMS) return undefined;
  const at = locateBindValues(frame);
  if (at === undefined || at.count !== rw.clientCount) return undefined;
  // Text parameters only (every format code 0): then the added ones are text too, and no code is sent.
  for (let i = 0; i < at.formatCount; i++) if (frame.readInt16BE(at.formats + 2 * i) !== 0) return undefined;
  const end = frame.length;
  const names = at.formats - 2; // the format count follows the portal and statement names
  const count = at.count;
  const tail = at.results;
  const starts = new Array<number>(count);
  const lens = new Array<number>(count);
  for (let i = 0, q = at.values; i < count; i++) {
    const len = frame.readInt32BE(q);
    starts[i] = q + 4;
    lens[i] = len;
    q += 4 + Math.max(len, 0);
  }

  // Every parameter's new value: undefined = the client's bytes as they are.
  const vals = new Array<Buffer | null | undefined>(rw.total);
  for (const f of rw.scalars) {
    let pt: Buffer | null;
    if (f.src !== undefined) {
      const i = f.src - 1;
      pt = lens[i]! < 0 ? null : frame.subarray(starts[i]!, starts[i]! + lens[i]!);
    } else pt = f.value!;
    if (pt === null) {
      // NULL compares as NULL in every slot (`col IN (NULL, …)` is never true, as `col = NULL`).
      for (const t of f.targets) vals[t - 1] = null;
      continue;
    }
    const c = key(f.column).slots(pt, f.targets.length);
    for (let k = 0; k < f.targets.length; k++) vals[f.targets[k]! - 1] = c[k]!;
  }
  let size = names + 4 + (end - tail);
  for (let i = 0; i < rw.total; i++) {
    const v = vals[i];
    if (v === undefined) {
      if (i >= count) return undefined; // an added parameter nothing fills (not a plan this path knows)
      size += 4 + Math.max(lens[i]!, 0);
    } else size += 4 + (v === null ? 0 : v.length);
  }

  const out = Buffer.allocUnsafe(size);
  frame.copy(out, 0, 0, names);
  out.writeInt32BE(size - 1, 1);
  let o = names;
  out.writeInt16BE(0, o); // no format codes: all text
  out.writeInt16BE(rw.total, o + 2);
  o += 4;
  for (let i = 0; i < rw.total; i++) {
    const v = vals[i];
    if (v === undefined) {
      const len = lens[i]!;
      out.writeInt32BE(len, o);
      o += 4;
      if (len > 0) o += frame.copy(out, o, starts[i]!, starts[i]! + len);
    } else if (v === null) {
      out.writeInt32BE(-1, o);
      o += 4;
    } else {
      out.writeInt32BE(v.length, o);
      out.set(v, o + 4);
      o += 4 + v.length;
    }
  }
  frame.copy(out, o, tail, end);
  return out;
}
