// The read path: which fields of a result carry configured columns (from the
// RowDescription's table OID + attnum, resolved through the live catalog), and
// the DataRow rewrite that decrypts them. A row with nothing to decrypt is
// forwarded as the very same bytes.
import type { ColumnPolicy } from '../config/types.js';
import type { ResolvedCatalog } from '../catalog/types.js';
import { CMEKDecryptionError } from '../crypto/errors.js';
import type { ResultShape } from '../proxy/state-types.js';
import { hasPrefixAt } from '../crypto/envelope.js';
import { WRITTEN, type OutputSink } from '../proxy/interceptor.js';
import { spliceValueFrom, spliceValues, splicedSize, splicedSizeAll, writeSpliced, writeSplicedAll, type ValueEdit } from './splice.js';
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
  /** Both, by column position: the one pass over a DataRow visits them in this order. */
  visits: Visit[];
}

interface Visit {
  index: number;
  /** undefined: an unmapped field. */
  field: FieldPlan | undefined;
}

const TEXT_LIKE = new Set([25, 1043, 705 /* unknown */, 19 /* name */]);
const PREFIX = Buffer.from('cmek:v1:', 'latin1');

/** null when no field needs work (the common case: forward rows untouched). */
export function planRows(shape: ResultShape, catalog: ResolvedCatalog | undefined, decryptUnmapped: boolean): RowPlan | null {
  const fields: FieldPlan[] = [];
  const unmapped: number[] = [];
  const visits: Visit[] = [];
  shape.fields.forEach((f, i) => {
    const col = f.tableOid && catalog ? catalog.lookup(f.tableOid, f.columnAttr) : undefined;
    if (col) {
      const rel = catalog!.relation(col.source.schema, col.source.table);
      const base = rel?.columns.find((c) => c.name === col.source.column)?.baseTypeOid ?? col.typeOid;
      const field: FieldPlan = {
        index: i,
        policy: col.policy,
        shape: shapeOf(base),
        binary: shape.formats[i] === 1,
        label: `${col.source.schema}.${col.source.table}.${col.source.column}`,
        table: `${col.source.schema}.${col.source.table}`,
        column: col.source.column,
      };
      fields.push(field);
      visits.push({ index: i, field });
    } else if (decryptUnmapped && f.tableOid === 0 && TEXT_LIKE.has(f.typeOid)) {
      unmapped.push(i);
      visits.push({ index: i, field: undefined });
    }
  });
  return fields.length || unmapped.length ? { fields, unmapped, visits } : null;
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

/** A field to replace, its new value possibly still being decrypted. */
interface PendingEdit {
  from: number;
  to: number;
  value: MaybePromise<Buffer>;
}

/**
 * Decrypts the planned fields of one DataRow frame. Returns undefined when the
 * row is unchanged, else the new frame: written into `out` when given and the
 * row is decrypted at once (then the result is WRITTEN), else one allocation
 * (splice.ts). Throws RowDecryptError (possibly via the Promise) when a field
 * fails and its policy is `on_decrypt_error: error`. One pass over the fields
 * up to the last planned one.
 */
export function decryptDataRow(frame: Buffer, plan: RowPlan, codec: ValueCodec, kept: OnCiphertextKept, out?: OutputSink): MaybePromise<Buffer | undefined> {
  // D, int32 len, int16 count, then (int32 len | -1, bytes)*.
  const count = frame.readInt16BE(5);
  const visits = plan.visits;
  // The first edit in locals: most rows change one field, and then nothing else is allocated.
  let from = 0;
  let to = 0;
  let value: MaybePromise<Buffer> | undefined;
  let more: PendingEdit[] | undefined;
  let pending = false;
  let at = 7;
  for (let i = 0, v = 0; i < count && v < visits.length; i++) {
    const len = frame.readInt32BE(at);
    const start = at + 4;
    const end = len > 0 ? start + len : start;
    if (visits[v]!.index === i) {
      const field = visits[v++]!.field;
      let r: MaybePromise<Buffer> | undefined;
      // Most reads of a hot row: the plaintext is spliced straight from the value cache.
      const c = len >= 0 && field !== undefined && field.shape === 'text' && hasPrefixAt(frame, start, end) ? codec.cachedAt(frame, start, end, field.policy) : -1;
      if (c >= 0) {
        const bytes = codec.cachedBytes();
        const n = codec.cachedLength();
        if (visits.length === 1) return splice(frame, at, end, bytes, c, c + n, out);
        r = Buffer.allocUnsafe(n); // the next field's decryption may overwrite the cache's bytes
        bytes.copy(r, 0, c, c + n);
      } else {
        r = len < 0 ? undefined : field ? decryptField(frame, start, end, field, codec, kept) : decryptUnmapped(frame, start, end, codec);
        if (r !== undefined && visits.length > 1 && !(r instanceof Promise)) r = Buffer.from(r); // a view of the cache, as above
      }
      if (r !== undefined) {
        if (value === undefined) {
          from = at;
          to = end;
          value = r;
        } else {
          (more ??= []).push({ from: at, to: end, value: r });
        }
        if (r instanceof Promise) pending = true;
      }
    }
    at = end;
  }
  if (value === undefined) return undefined;
  if (!more && !pending) return splice(frame, from, to, value as Buffer, 0, (value as Buffer).length, out);
  const all: PendingEdit[] = [{ from, to, value }, ...(more ?? [])];
  if (!pending) {
    if (out === undefined) return spliceValues(frame, all as ValueEdit[]);
    const buf = out.claim(splicedSizeAll(frame, all as ValueEdit[]));
    writeSplicedAll(frame, all as ValueEdit[], buf, out.claimAt);
    return WRITTEN;
  }
  return Promise.all(all.map((e) => e.value)).then((vals) => spliceValues(frame, all.map((e, k) => ({ from: e.from, to: e.to, value: vals[k]! }))));
}

/** The frame with [from, to) holding src[vs, ve): in `out` when given, else a new Buffer. */
function splice(frame: Buffer, from: number, to: number, src: Buffer, vs: number, ve: number, out: OutputSink | undefined): Buffer {
  if (out === undefined) return spliceValueFrom(frame, from, to, src, vs, ve);
  const buf = out.claim(splicedSize(frame, from, to, ve - vs));
  writeSpliced(frame, from, to, src, vs, ve, buf, out.claimAt);
  return WRITTEN;
}

/** The field's new bytes, or undefined when it stays as it is. */
function decryptField(frame: Buffer, start: number, end: number, f: FieldPlan, codec: ValueCodec, kept: OnCiphertextKept): MaybePromise<Buffer> | undefined {
  // Text: an envelope is the whole value. JSON: it may sit anywhere inside (a path, or a JSON string).
  if (f.shape === 'text') {
    if (!hasPrefixAt(frame, start, end)) return undefined;
    // Most reads: a cached value, found without a Buffer of the field.
    let r: MaybePromise<Buffer> | undefined;
    try {
      r = codec.decryptTextAt(frame, start, end, f.policy);
    } catch (e) {
      onFieldError(e, f, frame.subarray(start, end), kept); // throws, or keeps the ciphertext: unchanged
      return undefined;
    }
    return r instanceof Promise ? r.catch((e: unknown) => onFieldError(e, f, frame.subarray(start, end), kept)) : r;
  } else {
    const p = frame.indexOf(PREFIX, start);
    if (p < 0 || p + PREFIX.length > end) return undefined;
  }
  const value = frame.subarray(start, end);
  let r: MaybePromise<Buffer>;
  try {
    r = codec.decrypt(value, f.policy, f.shape, f.binary);
  } catch (e) {
    r = onFieldError(e, f, value, kept);
  }
  if (r instanceof Promise) return r.catch((e: unknown) => onFieldError(e, f, value, kept));
  return r === value ? undefined : r;
}

/** Unmapped: only a valid envelope under a loaded KEK is decrypted; anything else is left alone. */
function decryptUnmapped(frame: Buffer, start: number, end: number, codec: ValueCodec): MaybePromise<Buffer> | undefined {
  if (!hasPrefixAt(frame, start, end)) return undefined;
  const value = frame.subarray(start, end);
  let r: MaybePromise<Buffer>;
  try {
    r = codec.decryptText(value);
  } catch {
    return undefined;
  }
  if (r instanceof Promise) return r.catch(() => value);
  return r === value ? undefined : r;
}

function onFieldError(e: unknown, f: FieldPlan, value: Buffer, kept: OnCiphertextKept): Buffer {
  if (!(e instanceof CMEKDecryptionError)) throw e;
  if (f.policy.onDecryptError === 'ciphertext') {
    kept(f, e);
    return value;
  }
  throw new RowDecryptError(f, e);
}
