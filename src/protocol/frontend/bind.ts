// Bind ('B'): portal, statement, parameter format codes, parameter values (int32
// length, -1 = NULL, then bytes), result format codes. Values are views into the
// frame: decoding copies nothing.
import { FrontendCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { frameBody } from '../frame.js';

export interface Bind {
  /** '' = the unnamed portal. */
  portal: string;
  statement: string;
  /** 0 entries = all text; 1 = applies to all; else one per parameter. */
  paramFormats: number[];
  /** null = SQL NULL. */
  values: (Buffer | null)[];
  /** 0 entries = all text; 1 = applies to all; else one per column. */
  resultFormats: number[];
}

export function decodeBind(frame: Buffer): Bind {
  const r = new BufferReader(frameBody(frame, FrontendCode.Bind, 'Bind'));
  const portal = r.cstring();
  const statement = r.cstring();
  const nf = r.count16();
  const paramFormats = new Array<number>(nf);
  for (let i = 0; i < nf; i++) paramFormats[i] = r.int16();
  const nv = r.count16();
  const values = new Array<Buffer | null>(nv);
  for (let i = 0; i < nv; i++) {
    const len = r.int32();
    values[i] = len === -1 ? null : r.bytes(len);
  }
  const nr = r.count16();
  const resultFormats = new Array<number>(nr);
  for (let i = 0; i < nr; i++) resultFormats[i] = r.int16();
  r.done('Bind');
  return { portal, statement, paramFormats, values, resultFormats };
}

/** Only the names and result formats: what the session state needs, without walking values twice. */
export function decodeBindHead(frame: Buffer): { portal: string; statement: string; resultFormats: number[] } {
  const r = new BufferReader(frameBody(frame, FrontendCode.Bind, 'Bind'));
  const portal = r.cstring();
  const statement = r.cstring();
  r.bytes(2 * r.count16());
  const nv = r.count16();
  for (let i = 0; i < nv; i++) {
    const len = r.int32();
    if (len !== -1) r.bytes(len);
  }
  const nr = r.count16();
  const resultFormats = new Array<number>(nr);
  for (let i = 0; i < nr; i++) resultFormats[i] = r.int16();
  r.done('Bind');
  return { portal, statement, resultFormats };
}

export function encodeBind(b: Bind): Buffer {
  let size = 32;
  for (const v of b.values) size += 4 + (v ? v.length : 0);
  const w = new BufferWriter(size).begin(FrontendCode.Bind).cstring(b.portal).cstring(b.statement);
  w.int16(b.paramFormats.length);
  for (const f of b.paramFormats) w.int16(f);
  w.int16(b.values.length);
  for (const v of b.values) {
    if (v === null) w.int32(-1);
    else w.int32(v.length).bytes(v);
  }
  w.int16(b.resultFormats.length);
  for (const f of b.resultFormats) w.int16(f);
  return w.end().finish();
}

/** The format code that applies to column/parameter i under Postgres's 0/1/n rule. */
export function formatAt(formats: readonly number[], i: number): number {
  if (formats.length === 0) return 0;
  if (formats.length === 1) return formats[0]!;
  return formats[i] ?? 0;
}

/** Byte offsets in a well-formed Bind frame (see locateBindValues). */
export interface BindLayout {
  /** The first parameter format code, and how many there are. */
  formats: number;
  formatCount: number;
  /** The first parameter value's length word, and how many values there are. */
  values: number;
  count: number;
  /** The result format count (everything from here to the end is result formats). */
  results: number;
}

/**
 * Where a Bind's parameter format codes and values start, or undefined when
 * the frame is not well-formed (then decodeBind reports why). Every length is
 * checked against the frame, up to the result formats ending exactly at its end.
 * For rewriting a Bind in place without decoding it (src/encryption).
 */
export function locateBindValues(frame: Buffer): BindLayout | undefined {
  const end = frame.length;
  if (end < 5 || frame.readInt32BE(1) !== end - 1) return undefined;
  let p = frame.indexOf(0, 5); // portal name
  if (p < 0) return undefined;
  p = frame.indexOf(0, p + 1); // statement name
  if (p < 0 || p + 3 > end) return undefined;
  const formatCount = frame.readInt16BE(p + 1);
  const formats = p + 3;
  p = formats + 2 * formatCount;
  if (formatCount < 0 || p + 2 > end) return undefined;
  const count = frame.readInt16BE(p);
  const values = p + 2;
  p = values;
  if (count < 0) return undefined;
  for (let i = 0; i < count; i++) {
    if (p + 4 > end) return undefined;
    const len = frame.readInt32BE(p);
    if (len < -1) return undefined;
    p += 4 + Math.max(len, 0);
  }
  if (p + 2 > end) return undefined;
  const results = frame.readInt16BE(p);
  if (results < 0 || p + 2 + 2 * results !== end) return undefined;
  return { formats, formatCount, values, count, results: p };
}
