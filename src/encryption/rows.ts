// The read path: which fields of a result carry configured columns (from the
// RowDescription's table OID + attnum, resolved through the live catalog), and
// the DataRow rewrite that decrypts them. A row with nothing to decrypt is
// forwarded as the very same bytes.
import type { ColumnPolicy } from '../config/types.js';
import type { ResolvedCatalog } from '../catalog/types.js';
import { CMEKDecryptionError } from '../crypto/errors.js';
import type { ResultShape } from '../proxy/state.js';
import { shapeOf, type MaybePromise, type ValueCodec, type ValueShape } from './values.js';

export interface FieldPlan {
  index: number;
  policy: ColumnPolicy;
  shape: ValueShape;
  binary: boolean;
  /** schema.table.column of the configured column, for errors and logs. */
  label: string;
  table: string;
  column: string;
}

export interface RowPlan {
  fields: FieldPlan[];
  /** Text fields without a known origin, decrypted only when they hold a valid envelope (`decrypt_unmapped: prefixed`). */
  unmapped: number[];
}

const TEXT_LIKE = new Set([25, 1043, 705 /* unknown */, 19 /* name */]);
const PREFIX = Buffer.from('cmek:v1:', 'latin1');

/** null when no field needs work (the common case: forward rows untouched). */
export function planRows(shape: ResultShape, catalog: ResolvedCatalog | undefined, decryptUnmapped: boolean): RowPlan | null {
  const fields: FieldPlan[] = [];
  const unmapped: number[] = [];
  shape.fields.forEach((f, i) => {
    const col = f.tableOid && catalog ? catalog.lookup(f.tableOid, f.columnAttr) : undefined;
    if (col) {
      const rel = catalog!.relation(col.source.schema, col.source.table);
      const base = rel?.columns.find((c) => c.name === col.source.column)?.baseTypeOid ?? col.typeOid;
      fields.push({
        index: i,
        policy: col.policy,
        shape: shapeOf(base),
        binary: shape.formats[i] === 1,
        label: `${col.source.schema}.${col.source.table}.${col.source.column}`,
        table: `${col.source.schema}.${col.source.table}`,
        column: col.source.column,
      });
    } else if (decryptUnmapped && f.tableOid === 0 && TEXT_LIKE.has(f.typeOid)) {
      unmapped.push(i);
    }
  });
  return fields.length || unmapped.length ? { fields, unmapped } : null;
}

/** A configured column's value could not be decrypted and its policy says: fail the result. */
export class RowDecryptError extends Error {
  constructor(
    readonly field: FieldPlan,
    override readonly cause: CMEKDecryptionError,
  ) {
    super(`CMEKDecryptionError: cannot decrypt ${field.label} (${cause.reason})`);
  }
}

export type OnCiphertextKept = (field: FieldPlan, err: CMEKDecryptionError) => void;

/**
 * Decrypts the planned fields of one DataRow frame. Returns undefined when the
 * row is unchanged, else the new frame. Throws RowDecryptError (possibly via the
 * Promise) when a field fails and its policy is `on_decrypt_error: error`.
 */
export function decryptDataRow(frame: Buffer, plan: RowPlan, codec: ValueCodec, kept: OnCiphertextKept): MaybePromise<Buffer | undefined> {
  // Field offsets: D, int32 len, int16 count, then (int32 len | -1, bytes)*.
  const count = frame.readInt16BE(5);
  const starts = new Int32Array(count);
  const lens = new Int32Array(count);
  let at = 7;
  for (let i = 0; i < count; i++) {
    const n = frame.readInt32BE(at);
    at += 4;
    starts[i] = at;
    lens[i] = n;
    if (n > 0) at += n;
  }
  let out: (Buffer | Promise<Buffer>)[] | undefined;
  const put = (i: number, v: MaybePromise<Buffer>) => {
    out ??= new Array(count);
    out[i] = v;
  };
  for (const f of plan.fields) {
    if (f.index >= count || lens[f.index]! < 0) continue;
    const value = frame.subarray(starts[f.index]!, starts[f.index]! + lens[f.index]!);
    if (f.shape === 'text' ? !startsWithPrefix(value) : value.indexOf(PREFIX) < 0) continue;
    let r: MaybePromise<Buffer>;
    try {
      r = codec.decrypt(value, f.policy, f.shape, f.binary);
    } catch (e) {
      r = onFieldError(e, f, value, kept);
    }
    if (r instanceof Promise) r = r.catch((e: unknown) => onFieldError(e, f, value, kept));
    if (r !== value) put(f.index, r);
  }
  for (const i of plan.unmapped) {
    if (i >= count || lens[i]! < 0) continue;
    const value = frame.subarray(starts[i]!, starts[i]! + lens[i]!);
    if (!startsWithPrefix(value)) continue;
    // Unmapped: only a valid envelope under a loaded KEK is decrypted; anything else is left alone.
    let r: MaybePromise<Buffer>;
    try {
      r = codec.decryptText(value);
    } catch {
      continue;
    }
    if (r instanceof Promise) r = r.catch(() => value);
    put(i, r);
  }
  if (!out) return undefined;
  const replaced = out;
  if (replaced.some((v) => v instanceof Promise)) {
    return Promise.all(replaced).then((vals) => rebuild(frame, count, starts, lens, vals));
  }
  return rebuild(frame, count, starts, lens, replaced as Buffer[]);
}

function onFieldError(e: unknown, f: FieldPlan, value: Buffer, kept: OnCiphertextKept): Buffer {
  if (!(e instanceof CMEKDecryptionError)) throw e;
  if (f.policy.onDecryptError === 'ciphertext') {
    kept(f, e);
    return value;
  }
  throw new RowDecryptError(f, e);
}

function startsWithPrefix(v: Buffer): boolean {
  return v.length >= 8 && v[0] === 0x63 && v.compare(PREFIX, 0, 8, 0, 8) === 0;
}

function rebuild(frame: Buffer, count: number, starts: Int32Array, lens: Int32Array, vals: (Buffer | undefined)[]): Buffer {
  let size = 7;
  for (let i = 0; i < count; i++) size += 4 + (vals[i] ? vals[i]!.length : Math.max(lens[i]!, 0));
  const buf = Buffer.allocUnsafe(size);
  buf[0] = 0x44;
  buf.writeInt32BE(size - 1, 1);
  buf.writeInt16BE(count, 5);
  let at = 7;
  for (let i = 0; i < count; i++) {
    const v = vals[i];
    if (v) {
      buf.writeInt32BE(v.length, at);
      at += 4;
      at += v.copy(buf, at);
    } else {
      const n = lens[i]!;
      buf.writeInt32BE(n, at);
      at += 4;
      if (n > 0) at += frame.copy(buf, at, starts[i]!, starts[i]! + n);
    }
  }
  return buf;
}
