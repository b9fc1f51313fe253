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
